"""What a `weights=` argument resolved to: its kind and what its header says.

`SourceKind` is the one vocabulary for where weights come from; every format
module (`npz`, `timm`, `keras_file`) returns a `WeightsSource` of its own kind,
and every consumer (the builders, training, evaluation) branches on the enum,
so a renamed kind fails at import, not in a user's run.
"""

import dataclasses
import enum

RESOLUTION = 224  # every released checkpoint was trained at 224x224
# The authors' normalization of RGB 0-255 pixels: x / 127.5 - 1, i.e. [-1, 1].
AUTHORS_RESCALING = dict(scale=1 / 127.5, offset=-1.0)


class SourceKind(enum.Enum):
    NONE = "none"  # random initialisation
    TAG = "tag"  # a released .npz in the authors' bucket (downloaded on use)
    NPZ = "npz"  # a local .npz in the authors' layout
    TIMM = "timm"  # a timm repository: hf://OWNER/REPO or a local directory like one
    KERAS = "keras"  # a Keras .weights.h5 or .keras file


@dataclasses.dataclass
class WeightsSource:
    """What `weights=` resolved to, before any large download."""

    name: str  # how messages refer to it: the tag or the path
    kind: SourceKind
    tag: str = None
    variant: object = None
    path: str = None  # local file, or a timm repository's local directory
    repo: str = None  # a Hugging Face repository, fetched on load
    bucket_file: str = None  # for TAG: the file in the authors' bucket
    classes: int = None  # head size of the checkpoint, if it has a head
    # Side of the images it was trained on; None where a file cannot tell
    # (a Keras file of a non-square token grid: the model's shape decides).
    resolution: tuple = (RESOLUTION, RESOLUTION)
    gelu_form: str = "tanh"
    # The checkpoint's input normalization and eval crop (InputRescaling's arguments).
    preprocessing: dict = dataclasses.field(default_factory=lambda: dict(AUTHORS_RESCALING))
    tokens_mlp_dim: int = None  # KERAS: a tiled (high-resolution) model's token MLP width
    label_names: list = None  # TIMM: config.json's class names, one per class, if given

    def __post_init__(self):
        if not isinstance(self.kind, SourceKind):
            raise TypeError(f"kind: expected a SourceKind; got {self.kind!r}")

    @property
    def pretrained(self):
        return self.kind is not SourceKind.NONE
