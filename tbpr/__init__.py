__version__ = "0.1.0"

# Written by hand (nbdev keeps only `__version__` up to date here). Importing tbpr registers its model
# type with transformers' Auto classes (nbs/03_model.ipynb): the registration runs as soon as
# transformers' Auto classes are imported, or at once if they already are, so that
# `AutoModel.from_pretrained(folder)` takes a tbpr model folder while `import tbpr` stays instant.
import wrapt


@wrapt.when_imported("transformers.models.auto")
def _register_tbpr_model_type(auto_module) -> None:
    import tbpr.model  # noqa: F401  (its last statements call AutoConfig.register and AutoModel.register)
