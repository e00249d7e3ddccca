__version__ = "0.1.0"

# Written by hand (nbdev keeps only `__version__` up to date here). Importing tbpr registers its model
# type with transformers' Auto classes without importing torch or transformers itself: wrapt calls
# tbpr.hub's registrations once transformers' own Auto modules have been imported (nbs/03_hub.ipynb).
import wrapt


@wrapt.when_imported("transformers.models.auto.configuration_auto")
def _register_config(configuration_auto) -> None:
    from tbpr.hub import register_config

    register_config(configuration_auto)


@wrapt.when_imported("transformers.models.auto.modeling_auto")
def _register_model(modeling_auto) -> None:
    from tbpr.hub import register_model

    register_model(modeling_auto)
