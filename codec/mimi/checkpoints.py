"""Mimi checkpoint key maps: transformers' `save_pretrained` names and kyutai's original names -> ours.

Ours are transformers' flat names (what `MimiModel.save_pretrained` writes and `kyutai/mimi`'s
model.safetensors holds), less the codebooks' `initialized` flag (unused at inference). Original
kyutai/moshi checkpoints (`tokenizer-e351c8d8-checkpoint125.safetensors`) name the same tensors
differently and pack attention's q, k, v in one `in_proj_weight`:

    original                                              ours
    {encoder,decoder}.model.N[.block.M].conv.conv.*       {encoder,decoder}.layers.N[.block.M].conv.*
    decoder.model.N.convtr.convtr.*                       decoder.layers.N.conv.*
    downsample.conv.conv.conv.weight                      downsample.conv.weight
    upsample.convtr.convtr.convtr.weight                  upsample.conv.weight
    X_transformer.transformer.layers.N.self_attn.in_proj_weight  ...self_attn.{q,k,v}_proj.weight (q, k rows
                                                          reordered: kyutai's RoPE rotates interleaved pairs
                                                          (2i, 2i+1) of a head, transformers' (i, i + 32))
    ... .self_attn.out_proj / linear1 / linear2           ... .self_attn.o_proj / mlp.fc1 / mlp.fc2
    ... .norm1 / norm2 / layer_scale_1 / layer_scale_2    ... .input_layernorm / post_attention_layernorm /
                                                          self_attn_layer_scale / mlp_layer_scale
    quantizer.rvq_first / rvq_rest [.vq]                  quantizer.semantic_ / acoustic_residual_vector_quantizer
    ..._codebook.embedding_sum / cluster_usage            ...codebook.embed_sum / cluster_usage

Every key must match a rule; an unknown key raises, naming it.
"""

from __future__ import annotations

import re

import torch

_DROPPED = re.compile(r"^quantizer\.\w+_residual_vector_quantizer\.layers\.\d+\.codebook\.initialized$")
_OURS = [re.compile(p) for p in (
    r"^(encoder|decoder)\.layers\.\d+(\.block\.\d+)?\.conv\.(weight|bias)$",
    r"^(downsample|upsample)\.conv\.weight$",
    r"^(encoder|decoder)_transformer\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.fc[12])\.weight$",
    r"^(encoder|decoder)_transformer\.layers\.\d+\.(input|post_attention)_layernorm\.(weight|bias)$",
    r"^(encoder|decoder)_transformer\.layers\.\d+\.(self_attn|mlp)_layer_scale\.scale$",
    r"^quantizer\.(semantic|acoustic)_residual_vector_quantizer\.(input|output)_proj\.weight$",
    r"^quantizer\.(semantic|acoustic)_residual_vector_quantizer\.layers\.\d+\.codebook\.(embed_sum|cluster_usage)$",
)]

_T = r"^(encoder|decoder)_transformer\.transformer\.layers\.(\d+)\."
_RVQ = {"rvq_first": "semantic", "rvq_rest": "acoustic"}
_ORIGINAL = [(re.compile(p), f) for p, f in (
    (r"^(encoder|decoder)\.model\.(\d+)\.conv\.conv\.(weight|bias)$", lambda m: f"{m[1]}.layers.{m[2]}.conv.{m[3]}"),
    (r"^decoder\.model\.(\d+)\.convtr\.convtr\.(weight|bias)$", lambda m: f"decoder.layers.{m[1]}.conv.{m[2]}"),
    (r"^(encoder|decoder)\.model\.(\d+)\.block\.(\d+)\.conv\.conv\.(weight|bias)$",
     lambda m: f"{m[1]}.layers.{m[2]}.block.{m[3]}.conv.{m[4]}"),
    (r"^downsample\.conv\.conv\.conv\.weight$", lambda m: "downsample.conv.weight"),
    (r"^upsample\.convtr\.convtr\.convtr\.weight$", lambda m: "upsample.conv.weight"),
    (_T + r"self_attn\.out_proj\.weight$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.self_attn.o_proj.weight"),
    (_T + r"linear([12])\.weight$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.mlp.fc{m[3]}.weight"),
    (_T + r"norm1\.(weight|bias)$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.input_layernorm.{m[3]}"),
    (_T + r"norm2\.(weight|bias)$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.post_attention_layernorm.{m[3]}"),
    (_T + r"layer_scale_1\.scale$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.self_attn_layer_scale.scale"),
    (_T + r"layer_scale_2\.scale$", lambda m: f"{m[1]}_transformer.layers.{m[2]}.mlp_layer_scale.scale"),
    (r"^quantizer\.(rvq_first|rvq_rest)\.(input|output)_proj\.weight$",
     lambda m: f"quantizer.{_RVQ[m[1]]}_residual_vector_quantizer.{m[2]}_proj.weight"),
    (r"^quantizer\.(rvq_first|rvq_rest)\.vq\.layers\.(\d+)\._codebook\.(embedding_sum|cluster_usage)$",
     lambda m: f"quantizer.{_RVQ[m[1]]}_residual_vector_quantizer.layers.{m[2]}.codebook."
               f"{'embed_sum' if m[3] == 'embedding_sum' else 'cluster_usage'}"),
    (r"^quantizer\.(rvq_first|rvq_rest)\.vq\.layers\.(\d+)\._codebook\._initialized$", lambda m: None),
)]
_IN_PROJ = re.compile(_T + r"self_attn\.in_proj_weight$")


def transformers_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers (`save_pretrained`, kyutai/mimi on the hub) state dict, `initialized` flags dropped;
    ValueError naming the keys that are not Mimi's."""
    unknown = [k for k in state if not _DROPPED.match(k) and not any(p.match(k) for p in _OURS)]
    if unknown:
        raise ValueError(f"unknown tensors in Mimi checkpoint: {unknown[:10]}")
    return {k: v for k, v in state.items() if not _DROPPED.match(k)}


def interleaved_to_halves(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """q or k projection rows [heads * d, in] from kyutai's RoPE order (pairs (2i, 2i + 1) of each head) to
    transformers' (pairs (i, i + d/2)): within a head, the even rows first, then the odd ones."""
    rows, cols = weight.shape
    d = rows // heads
    return weight.reshape(heads, d // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def original_to_ours(state: dict[str, torch.Tensor], heads: int) -> dict[str, torch.Tensor]:
    """Rename an original kyutai Mimi state dict (see the module docstring); ValueError naming unknown keys."""
    out, unknown = {}, []
    for key, value in state.items():
        m = _IN_PROJ.match(key)
        if m:
            q, k, v = value.chunk(3, dim=0)
            prefix = f"{m[1]}_transformer.layers.{m[2]}.self_attn"
            out.update({f"{prefix}.q_proj.weight": interleaved_to_halves(q, heads),
                        f"{prefix}.k_proj.weight": interleaved_to_halves(k, heads), f"{prefix}.v_proj.weight": v})
            continue
        for pattern, rename in _ORIGINAL:
            m = pattern.match(key)
            if m:
                name = rename(m)
                if name is not None:
                    out[name] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown tensors in original Mimi checkpoint: {unknown[:10]}")
    return out


def is_original(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith(("encoder.model.", "quantizer.rvq_first.")) for k in state)
