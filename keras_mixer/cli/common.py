"""What several commands parse the same way."""

import os

WEIGHTS_HELP = ("pretrained tag (imagenet, imagenet21k, ...), hf://OWNER/REPO, a timm "
                "repository directory, a .npz/.weights.h5/.keras file, or 'none' for "
                "random initialization")


def weights_arg(text, *, default=None):
    """--weights: 'none' means random initialization (None); omitted means `default`."""
    if text is None:
        return default
    return None if text.lower() == "none" else path_arg(text)


def path_arg(text):
    """Every path flag: `~` expanded, since `--output=~/x` reaches us unexpanded."""
    return os.path.expanduser(text)
