"""`reconent explain`: pictures of what each layer keeps of its input (arXiv:2406.12916, SCIENCE §4).

Two models, both through the same cascade probe (`reconent.science.probe.probe`, which freezes the body
and trains one decoder g_ℓ: h_ℓ → h_{ℓ-1} per layer):

* ``explain_mlp``: an MLP body plus Linear head is first **trained** on a dataset
  (`reconent.science.train.train`). The trained head becomes one more probe layer, ``HeadBlock``
  (logits = W h_L + b, no activation), so its decoder logits → h_L is trained with the cascade,
  in the same mini-batches and with the same Adam, as every other decoder. Figures: the input and
  its reconstructions x̂^(ℓ) from every layer and from the logits; the "ideal input" of each class,
  i.e. the vector with +1 at the class and −1 elsewhere pushed back through the head's decoder and
  then g_L, …, g_1 (the paper's convention; its network had a tanh on the output, ours gives raw
  logits, so ±1 is a small-logit probe); the entropy profile of the trained network.
* ``explain_vgg16``: torchvision VGG16 ``features`` cut into probe layers after named layers
  (``relu1_2``, ``pool1``, …). A probe layer is the run of VGG modules since the previous cut; its
  decoder mirrors it backwards: nearest ×2 upsampling for each max-pool, a 3×3 ConvTranspose2d
  (padding 1) for each conv, ReLU between stages, and a final ReLU (targets are post-ReLU/pool
  activations) or tanh for the first layer, whose target is the image. The ImageNet
  normalisation is part of the first probe layer, so h_0 is the image with pixels in [0, 1], as
  everywhere in reconent. Figures: per-layer reconstructions, single-channel probes (zero every
  channel of a layer but one, then run the cascade back to the image), the entropy profile.
  ImageNet weights are used where torchvision can load them; otherwise (no internet, no cache) a
  warning is printed and a random VGG16 is used: convs ~ N(0, 2/(C_out·k²)), biases 0, which is
  torchvision's own VGG init, drawn from reconent's (seed, layer) streams.

Each run writes PNGs and ``manifest.json`` to its output folder; ``figures(folder)`` lists the
figures with their captions, for the HTML report.

Modules: ``mlp`` (explain_mlp), ``vgg`` (explain_vgg16 and its blocks), ``images`` (the VGG16
inputs), ``output`` (image grids, the manifest, ``figures``). The CLI is ``reconent.cli.explain``.
"""

from .images import load_images
from .mlp import HeadBlock, explain_mlp, ideal_inputs
from .output import MANIFEST, figures
from .vgg import (IMAGENET_MEAN, IMAGENET_STD, VGG16_DEFAULT_LAYERS, VGGBlock, VGGDecoder, channel_probe,
                  explain_vgg16, load_vgg16, vgg16_body, vgg16_layer_names)

__all__ = ["HeadBlock", "IMAGENET_MEAN", "IMAGENET_STD", "MANIFEST", "VGG16_DEFAULT_LAYERS", "VGGBlock", "VGGDecoder",
           "channel_probe", "explain_mlp", "explain_vgg16", "figures", "ideal_inputs", "load_images", "load_vgg16",
           "vgg16_body", "vgg16_layer_names"]
