"""Every public Mixer checkpoint, by tag and variant (docs/weights.md tells
each file's provenance)."""

BASE_URL = "https://storage.googleapis.com/mixer_models/"
MIRROR_ENV = "KERAS_MIXER_WEIGHTS_URL"
CACHE_SUBDIR = "keras_mixer"
HF_PREFIX = "hf://"


def _bucket(*variants, folder):
    return {v: f"{folder}/Mixer-{v.replace('/', '_')}.npz" for v in variants}


# tag -> the checkpoint files it names, by variant: a path in the authors' bucket
# (BASE_URL) or a timm repository on Hugging Face. No hashes are published for
# any of these files, so none are checked (get_file's file_hash is passed through
# where one is known: FILE_HASHES). docs/weights.md tells each file's provenance.
CHECKPOINTS = {
    "imagenet": dict(
        description="ImageNet-1k classifier: the authors' from-scratch files for B/16 and "
                    "L/16 (paper: 76.44 / 71.76 top-1), their GSAM-trained files otherwise",
        classes=1000,
        files={**_bucket("B/16", "L/16", folder="imagenet1k"),
               **_bucket("S/32", "S/16", "S/8", "B/32", folder="gsam")},
    ),
    "imagenet21k": dict(
        description="ImageNet-21k pre-training, 21,843-class head, not fine-tuned on 1k",
        classes=21843, files=_bucket("B/16", "L/16", folder="imagenet21k"),
    ),
    "imagenet_sam": dict(
        description="ImageNet-1k, trained with SAM", classes=1000,
        files=_bucket("B/16", "B/32", folder="sam"),
    ),
    "imagenet_gsam": dict(
        description="ImageNet-1k, trained with GSAM", classes=1000,
        files=_bucket("B/16", "B/32", "S/16", "S/32", "S/8", folder="gsam"),
    ),
    "imagenet_miil": dict(
        description="Alibaba MIIL: ImageNet-21K-P pre-training, fine-tuned on ImageNet-1k "
                    "in PyTorch (exact GELU; timm: 82.3 top-1)",
        classes=1000, files={"B/16": "hf://timm/mixer_b16_224.miil_in21k_ft_in1k"},
    ),
    "imagenet21k_miil": dict(
        description="Alibaba MIIL: ImageNet-21K-P (winter21, 11,221 classes), not fine-tuned",
        classes=11221, files={"B/16": "hf://timm/mixer_b16_224.miil_in21k"},
    ),
}
# timm's copies of the authors' files, named when the bucket cannot be reached.
HF_COPIES = {
    "imagenet1k/Mixer-B_16.npz": "timm/mixer_b16_224.goog_in21k_ft_in1k",
    "imagenet1k/Mixer-L_16.npz": "timm/mixer_l16_224.goog_in21k_ft_in1k",
    "imagenet21k/Mixer-B_16.npz": "timm/mixer_b16_224.goog_in21k",
    "imagenet21k/Mixer-L_16.npz": "timm/mixer_l16_224.goog_in21k",
}
# get_file hashes (sha256) of files whose content the project has seen; none yet.
FILE_HASHES = {}


def available_tags(variant):
    if not isinstance(variant, str):  # custom configs have no released weights
        return []
    return [t for t, c in CHECKPOINTS.items() if variant in c["files"]]
