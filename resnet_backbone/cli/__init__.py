"""The command-line tools, one module each (``python tools/<name>.py`` and the ``resnet-<name>``
console scripts run their ``main``): each parses its arguments and calls the package."""
