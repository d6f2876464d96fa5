"""calcitrack's orchestration: command line, configuration, batch runs and outputs."""
