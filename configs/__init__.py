"""The config files of the paper's recipes and the demos; installed as ``resnet_backbone.configs``
(``resnet_backbone.recipes.get_config_file`` finds them)."""
