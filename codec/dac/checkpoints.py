"""DAC checkpoint key maps: original descript-audio-codec `.pth` names -> ours (transformers' names).

Original layout (`dac.model.DAC`): nn.Sequential indices; ours: transformers' named modules.

    original                                     ours (n = number of strides, 4)
    encoder.block.0                              encoder.conv1
    encoder.block.{i}.block.{j}.block.{0,1,2,3}  encoder.block.{i-1}.res_unit{j+1}.{snake1,conv1,snake2,conv2}
    encoder.block.{i}.block.3                    encoder.block.{i-1}.snake1
    encoder.block.{i}.block.4                    encoder.block.{i-1}.conv1
    encoder.block.{n+1}                          encoder.snake1
    encoder.block.{n+2}                          encoder.conv2
    decoder.model.0                              decoder.conv1
    decoder.model.{i}.block.0                    decoder.block.{i-1}.snake1
    decoder.model.{i}.block.1                    decoder.block.{i-1}.conv_t1
    decoder.model.{i}.block.{j}.block.{0..3}     decoder.block.{i-1}.res_unit{j-1}.{snake1,conv1,snake2,conv2}
    decoder.model.{n+1}                          decoder.snake1
    decoder.model.{n+2}                          decoder.conv2
    quantizer.quantizers.{k}.*                   quantizer.quantizers.{k}.*

Every key must match a rule; an unknown key raises, naming it. Parameter suffixes (weight, bias,
alpha, weight_g / weight_v) are kept; weight norm is folded afterwards (`codec.checkpoints`).
"""

from __future__ import annotations

import re

import torch

_UNIT = ("snake1", "conv1", "snake2", "conv2")
_SUFFIX = r"(weight|bias|alpha|weight_g|weight_v)"


def _rules(n_strides: int) -> list[tuple[re.Pattern, object]]:
    n = n_strides
    return [
        (rf"^encoder\.block\.0\.{_SUFFIX}$", lambda m: f"encoder.conv1.{m[1]}"),
        (rf"^encoder\.block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.{_SUFFIX}$",
         lambda m: f"encoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) + 1}.{_UNIT[int(m[3])]}.{m[4]}"),
        (rf"^encoder\.block\.(\d+)\.block\.3\.{_SUFFIX}$", lambda m: f"encoder.block.{int(m[1]) - 1}.snake1.{m[2]}"),
        (rf"^encoder\.block\.(\d+)\.block\.4\.{_SUFFIX}$", lambda m: f"encoder.block.{int(m[1]) - 1}.conv1.{m[2]}"),
        (rf"^encoder\.block\.{n + 1}\.{_SUFFIX}$", lambda m: f"encoder.snake1.{m[1]}"),
        (rf"^encoder\.block\.{n + 2}\.{_SUFFIX}$", lambda m: f"encoder.conv2.{m[1]}"),
        (rf"^decoder\.model\.0\.{_SUFFIX}$", lambda m: f"decoder.conv1.{m[1]}"),
        (rf"^decoder\.model\.(\d+)\.block\.0\.{_SUFFIX}$", lambda m: f"decoder.block.{int(m[1]) - 1}.snake1.{m[2]}"),
        (rf"^decoder\.model\.(\d+)\.block\.1\.{_SUFFIX}$", lambda m: f"decoder.block.{int(m[1]) - 1}.conv_t1.{m[2]}"),
        (rf"^decoder\.model\.(\d+)\.block\.([2-4])\.block\.([0-3])\.{_SUFFIX}$",
         lambda m: f"decoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) - 1}.{_UNIT[int(m[3])]}.{m[4]}"),
        (rf"^decoder\.model\.{n + 1}\.{_SUFFIX}$", lambda m: f"decoder.snake1.{m[1]}"),
        (rf"^decoder\.model\.{n + 2}\.{_SUFFIX}$", lambda m: f"decoder.conv2.{m[1]}"),
        (rf"^quantizer\.quantizers\.(\d+)\.(in_proj|out_proj|codebook)\.{_SUFFIX}$",
         lambda m: f"quantizer.quantizers.{m[1]}.{m[2]}.{m[3]}"),
    ]


def original_to_ours(state: dict[str, torch.Tensor], n_strides: int) -> dict[str, torch.Tensor]:
    """Rename an original DAC state dict; ValueError naming the keys no rule matches."""
    rules = [(re.compile(p), f) for p, f in _rules(n_strides)]
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, rename in rules:
            m = pattern.match(key)
            if m:
                out[rename(m)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown tensors in original DAC checkpoint: {unknown[:10]}")
    return out
