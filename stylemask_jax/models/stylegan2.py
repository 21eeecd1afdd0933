"""The rosinality StyleGAN2 generator (the one StyleMask uses) in Flax Linen, with its style space.

    gen = Generator.from_arch(arch)                       # arch as in configs/*.py or model.json
    variables = init_variables(gen, key)                  # or load_generator(dir) for real weights
    w = gen.apply(variables, z, method="mapping")         # (B, style_dim)
    wplus = to_wplus(truncate(w, latent_avg, 0.7), gen.n_latent)
    styles = gen.apply(variables, wplus, method="style_codes")      # list of (B, C_l), len num_layers
    image = gen.apply(variables, styles, wplus, method="synthesize")  # (B, size, size, 3)
    image = gen.apply(variables, z, truncation=0.7, truncation_latent=latent_avg)  # the same

Variables: `{'params': ..., 'buffers': {'noise_0': (1, 4, 4, 1), ..., 'noise_{L-1}': ...}}`
with L = num_layers. `params` (raw checkpoint values, Flax layouts; see stylegan2_layers):

  mapping_network/dense_{0..n_mlp-1}/{kernel (D, D), bias (D,)}
  const                          (1, 4, 4, channels[0])   the constant input
  conv_{i}/{weight (3, 3, Cin, Cout), modulation/{kernel (D, Cin), bias (Cin,)},
            noise_strength (), bias (Cout,)}          style layer i (reference conv1, convs.{i-1})
  to_rgb_{k}/{weight (1, 1, Cin, 3), modulation/{kernel, bias}, bias (3,)}
                                                      reference to_rgb1, to_rgbs.{k-1}

Index conventions (the reference's): style layer i uses W+ row i and noise_i; its style width
is its input channel count (`style_dims`); ToRGB k uses W+ row 2k + 1 and follows style layer
max(0, 2k); layers 2k - 1 (k >= 1) up-sample. The noise buffers are part of the model's
function (StyleMask never randomizes noise); pass `noise=random_noise(gen, key, B)` for fresh
noise. Images are float32 NHWC, nominally in [-1, 1] (not clamped).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylemask_jax.models.remat import remat_function
from stylemask_jax.models.stylegan2_layers import (MappingNetwork, StyledConv, ToRGB,
                                                   noise_shapes, style_layer_channels)
from stylemask_jax.ops.matrix_resize import adaptive_avg_pool2d
from stylemask_jax.weights import WeightsError, load_weights


class Generator(nn.Module):
    """StyleGAN2 generator. `channels`: feature widths at resolutions 4, 8, ..., size."""
    size: int
    style_dim: int
    n_mlp: int
    lr_mlp: float = 0.01
    channels: tuple = ()
    blur_kernel: tuple = (1, 3, 3, 1)
    dtype: Any = jnp.float32
    remat: str = "none"  # models/remat.py: "blocks" checkpoints every synthesis resolution

    @classmethod
    def from_arch(cls, arch: dict, dtype=jnp.float32) -> "Generator":
        """Builds the module from an arch dict (size, style_dim, n_mlp, lr_mlp, channels,
        blur_kernel), e.g. `config.generator` or a converted model.json's arch."""
        missing = [k for k in ("size", "style_dim", "n_mlp", "channels") if k not in arch]
        if missing:
            raise ValueError(f"generator arch is missing {', '.join(missing)}")
        return cls(size=int(arch["size"]), style_dim=int(arch["style_dim"]),
                   n_mlp=int(arch["n_mlp"]), lr_mlp=float(arch.get("lr_mlp", 0.01)),
                   channels=tuple(int(c) for c in arch["channels"]),
                   blur_kernel=tuple(float(k) for k in arch.get("blur_kernel", (1, 3, 3, 1))),
                   dtype=dtype)

    def arch(self) -> dict:
        """The arch dict that `from_arch` accepts (JSON-serialisable)."""
        return dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                    lr_mlp=self.lr_mlp, channels=list(self.channels),
                    blur_kernel=list(self.blur_kernel))

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def num_layers(self) -> int:
        """Style conv layers (= noise buffers): 17 at 1024, 9 at 64."""
        return 2 * self.log_size - 3

    @property
    def n_latent(self) -> int:
        """Rows of W+: 18 at 1024, 10 at 64."""
        return 2 * self.log_size - 2

    @property
    def style_dims(self) -> tuple[int, ...]:
        """Width of each style code (the conv's input channels), the reference split_sections."""
        return tuple(int(self.channels[i // 2]) for i in range(self.num_layers))

    def _check(self):
        if self.size < 4 or 2 ** self.log_size != self.size:
            raise ValueError(f"generator size must be a power of two >= 4, got {self.size}")
        if len(self.channels) != self.log_size - 1:
            raise ValueError(f"generator channels must list {self.log_size - 1} widths "
                             f"(resolutions 4..{self.size}), got {len(self.channels)}")

    def setup(self):
        self._check()
        self.mapping_network = MappingNetwork(self.style_dim, self.n_mlp, self.lr_mlp)
        self.const = self.param("const", nn.initializers.normal(1.0), (1, 4, 4, self.channels[0]))
        self.conv = [StyledConv(cin, cout, upsample=up, blur_kernel=self.blur_kernel,
                                dtype=self.dtype)
                     for cin, cout, up in style_layer_channels(self.channels)]
        self.to_rgb = [ToRGB(c, upsample=k > 0, blur_kernel=self.blur_kernel, dtype=self.dtype)
                       for k, c in enumerate(self.channels)]
        if self.has_variable("buffers", "noise_0") or self.is_mutable_collection("buffers"):
            self.noise_buffers = [
                self.variable("buffers", f"noise_{i}",
                              lambda s=shape: jax.random.normal(self.make_rng("params"), s))
                for i, shape in enumerate(noise_shapes(self.size))]
        else:
            self.noise_buffers = None

    # -- the pieces -------------------------------------------------------------------------

    def mapping(self, z: jnp.ndarray) -> jnp.ndarray:
        """z (B, style_dim) standard normal -> w (B, style_dim), float32."""
        return self.mapping_network(z)

    def style_codes(self, wplus: jnp.ndarray) -> list[jnp.ndarray]:
        """W+ (B, n_latent, D) -> the style space S: list of (B, style_dims[i]), float32."""
        return [self.conv[i].style(wplus[:, i]) for i in range(self.num_layers)]

    def rgb_styles(self, wplus: jnp.ndarray) -> list[jnp.ndarray]:
        """W+ (B, n_latent, D) -> the ToRGB styles: list of (B, channels[k]) (row 2k + 1)."""
        return [rgb.style(wplus[:, 2 * k + 1]) for k, rgb in enumerate(self.to_rgb)]

    def noise(self) -> list[jnp.ndarray]:
        """The stored noise buffers, list of (1, H_i, H_i, 1)."""
        if self.noise_buffers is None:
            raise ValueError("the variables have no 'buffers' collection (noise_0..); pass "
                             "noise=... explicitly or use the full variables")
        return [v.value for v in self.noise_buffers]

    def synthesize(self, styles: Sequence[jnp.ndarray], wplus: jnp.ndarray,
                   noise: Sequence[jnp.ndarray] | None = None) -> jnp.ndarray:
        """Image from style codes (conv layers) and W+ (ToRGB layers): (B, size, size, 3).

        styles: list of num_layers arrays (B, style_dims[i]) used *as* the modulation outputs;
        wplus: (B, n_latent, D); noise: None (the stored buffers) or a list of arrays
        broadcastable to (B, H_i, H_i, 1).
        """
        if len(styles) != self.num_layers:
            raise ValueError(f"synthesize: expected {self.num_layers} style codes, got {len(styles)}")
        noise = self.noise() if noise is None else list(noise)
        if len(noise) != self.num_layers:
            raise ValueError(f"synthesize: expected {self.num_layers} noise maps, got {len(noise)}")
        batch = wplus.shape[0]
        rgb_styles = self.rgb_styles(wplus)
        block = remat_function(Generator._synthesis_block, self.remat, static_argnums=(1,))
        x = jnp.broadcast_to(self.const, (batch,) + self.const.shape[1:]).astype(self.dtype)
        x, skip = block(self, 0, x, None, styles[:1], noise[:1], rgb_styles[0])
        for k in range(1, len(self.to_rgb)):
            layers = slice(2 * k - 1, 2 * k + 1)
            x, skip = block(self, k, x, skip, styles[layers], noise[layers], rgb_styles[k])
        return skip

    def _synthesis_block(self, k: int, x, skip, styles, noise, rgb_style):
        """Resolution k of the synthesis (the unit of `remat`): (x, skip) -> (x, skip).

        k = 0: conv_0 on the constant, to_rgb_0. k >= 1: the up-sampling conv_{2k-1}, conv_{2k}
        and to_rgb_k, which adds the up-sampled skip (B, 2^(k+1), 2^(k+1), 3)."""
        for layer, (style, n) in enumerate(zip(styles, noise)):
            x = self.conv[max(0, 2 * k - 1) + layer](x, style, n)
        return x, self.to_rgb[k](x, rgb_style, skip)

    def __call__(self, codes: jnp.ndarray, input_type: str = "z", truncation: float = 1.0,
                 truncation_latent: jnp.ndarray | None = None,
                 noise: Sequence[jnp.ndarray] | None = None) -> jnp.ndarray:
        """The reference forward: codes z (B, D), w (B, D) or W+ (B, n_latent, D) -> image.

        Truncation toward `truncation_latent` (D,) or (1, D) is applied (row-wise for W+) when
        a latent is given and `truncation` is not the Python number 1.
        """
        wplus = self.wplus(codes, input_type, truncation, truncation_latent)
        return self.synthesize(self.style_codes(wplus), wplus, noise)

    def wplus(self, codes: jnp.ndarray, input_type: str = "z", truncation: float = 1.0,
              truncation_latent: jnp.ndarray | None = None) -> jnp.ndarray:
        """z / w / W+ codes -> truncated W+ (B, n_latent, D), as the reference encoder does."""
        if input_type == "z":
            w = self.mapping(codes)
        elif input_type in ("w", "wplus"):
            w = codes.astype(jnp.float32)
        else:
            raise ValueError(f"input_type must be 'z', 'w' or 'wplus', got {input_type!r}")
        expected = 3 if input_type == "wplus" else 2
        if w.ndim != expected:
            raise ValueError(f"input_type {input_type!r} expects {expected}-D codes, got {w.shape}")
        if _applies(truncation, truncation_latent):
            w = truncate(w, truncation_latent, truncation)
        return w if input_type == "wplus" else to_wplus(w, self.n_latent)

    def _initialize(self) -> None:
        """Creates every parameter without running the convolutions (see init_variables)."""
        w = self.mapping(jnp.zeros((1, self.style_dim), jnp.float32))
        wplus = to_wplus(w, self.n_latent)
        self.style_codes(wplus)
        self.rgb_styles(wplus)
        self.noise()


def _applies(truncation, truncation_latent) -> bool:
    is_one = isinstance(truncation, (int, float)) and truncation == 1
    if truncation_latent is None:
        if not is_one:
            raise ValueError("truncation < 1 needs a truncation_latent (e.g. the checkpoint's "
                             "latent_avg or mean_latent(...))")
        return False
    return not is_one


# -- module-level pure functions ----------------------------------------------------------------

def truncate(w: jnp.ndarray, mean: jnp.ndarray, psi) -> jnp.ndarray:
    """The truncation trick, the project's one truncation rule: mean + psi * (w - mean).

    w: W (B, D) or W+ (B, L, D), every row toward the same mean (D,) or (1, D); psi: a number,
    or one per code (B,) (the demo's per-request slider). Real photos' e4e codes take it row by
    row as the official inference does (`Generator.wplus` with input_type 'wplus').
    """
    mean = jnp.asarray(mean, jnp.float32)
    mean = mean.reshape(mean.shape[-1:])
    if jnp.ndim(psi) == 1:
        psi = jnp.reshape(psi, (-1,) + (1,) * (w.ndim - 1))
    return mean + psi * (w - mean)


def to_wplus(w: jnp.ndarray, n_latent: int) -> jnp.ndarray:
    """w (B, D) -> W+ (B, n_latent, D), every row equal to w."""
    return jnp.broadcast_to(w[:, None, :], (w.shape[0], n_latent, w.shape[-1]))


FACE_SIZE = 256             # face_pool's output size: DECA, ArcFace and the losses see 256
MEAN_LATENT_SAMPLES = 4096  # z samples of the mapping mean when a checkpoint has no latent_avg


def mean_latent(gen: Generator, variables, key: jax.Array, n: int = MEAN_LATENT_SAMPLES) -> jnp.ndarray:
    """Mean of mapping(z) over n standard-normal z drawn from `key`: (style_dim,) float32."""
    z = jax.random.normal(key, (n, gen.style_dim), jnp.float32)
    return gen.apply(variables, z, method=Generator.mapping).mean(axis=0)


def random_noise(gen: Generator, key: jax.Array, batch: int) -> list[jnp.ndarray]:
    """Fresh standard-normal noise maps: list of (batch, H_i, H_i, 1), one per style layer."""
    keys = jax.random.split(key, gen.num_layers)
    return [jax.random.normal(k, (batch,) + s[1:], jnp.float32)
            for k, s in zip(keys, noise_shapes(gen.size))]


def face_pool(images: jnp.ndarray, size: int = FACE_SIZE) -> jnp.ndarray:
    """StyleMask's pooling of generator images to 256, the project's one (the reenactment's
    resize_256, the training losses, evaluation, refinement): (B, N, N, C) -> (B, 256, 256, C).

    N > 256: torch's adaptive average pooling (an exact 4x4 mean at 1024); N = 256: unchanged;
    N < 256 dividing 256 (the tiny configs): each pixel repeated (what torch's adaptive pooling
    and the reference trainer's repeat_interleave both give); other N: adaptive pooling.
    """
    n = images.shape[1]
    if n == size:
        return images
    if n < size and size % n == 0:
        k = size // n
        return jnp.repeat(jnp.repeat(images, k, axis=1), k, axis=2)
    return adaptive_avg_pool2d(images, size)


def init_variables(gen: Generator, key: jax.Array) -> dict:
    """Random variables in the reference's initialisation (the converted tree's structure).

    Mapping kernels N(0, 1) / lr_mlp, biases 0; const, conv and modulation weights N(0, 1);
    modulation biases 1; noise strengths 0; noise buffers N(0, 1). Runs no convolution.
    """
    variables = gen.init(key, method=Generator._initialize)
    return {"params": variables["params"], "buffers": variables["buffers"]}


def load_generator(weights_dir, dtype=jnp.float32):
    """A converted generator directory -> (Generator, variables, latent_avg (D,) or None).

    `weights_dir` is what `stylemask convert stylegan2 IN.pt OUT_DIR` (or e4e's
    --generator-out) wrote; variables are {'params', 'buffers'} of jnp float32 arrays.
    """
    tree, arch = load_weights(weights_dir, "stylegan2")
    try:
        gen = Generator.from_arch(arch, dtype=dtype)
    except ValueError as err:
        raise WeightsError(f"{weights_dir}: bad generator arch in model.json ({err})") from None
    if not isinstance(tree, dict) or "params" not in tree or "buffers" not in tree:
        raise WeightsError(f"{weights_dir}: expected 'params' and 'buffers' in the stylegan2 weights")
    variables = {"params": tree["params"], "buffers": tree["buffers"]}  # on the device already
    expected = jax.eval_shape(lambda: init_variables(gen, jax.random.key(0)))
    got = jax.tree_util.tree_map(lambda x: x.shape, variables)
    want = jax.tree_util.tree_map(lambda x: x.shape, expected)
    if got != want:
        raise WeightsError(f"{weights_dir}: the stored parameter tree does not match the "
                           f"architecture in model.json")
    latent_avg = tree.get("latent_avg")
    return gen, variables, None if latent_avg is None else jnp.asarray(latent_avg, jnp.float32)
