#!/usr/bin/env python3
# make_golden.py - produces golden/<case>.f32 by running the ORIGINAL PyTorch model code.
#
# Input: a directory written by diffc-reference-export (weights, inputs and this project's own
# output for every case of TestCases.h) and checkouts of the four reference repositories at the
# commits pinned in the spec (section 0). Every model is rebuilt from the original source with the
# case's tiny configuration, the exported weights are loaded with strict=True (so a state-dict
# naming or shape mismatch fails here), and the original forward's output is written as raw
# little-endian float32 in C order. The script also prints how far the LibTorch reference is from
# it. Runs on CPU in float32 with TF32 off, the precision the references are compared at.
#
# The originals import a few packages they do not need for these forwards or that are not
# installable everywhere (flash-attn, flash-linear-attention at DiG's pinned commit, open_clip,
# HuggingFace text encoders); minimal stand-ins replace them only while the original module is
# imported. Only the GLA kernel stand-in carries model math, written from spec 5.2 (the state
# recurrence of fla's naive_recurrent_gla); everything else about DiG is the original code. DiT-MoE's
# q/k-norm attention casts q and k to fp16 for FlashAttention; the forward is replaced by the same
# computation without that cast, because the references are float32.
#
# Usage: make_golden.py EXPORT_DIR OUT_DIR --dit DIT --ditmoe DITMOE --microdit MICRODIT --dig DIG
# where DIT, DITMOE, DIG are repository roots and MICRODIT is micro_diffusion's models/ folder.

import argparse
import importlib.util
import os
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_case(case_dir):
    blob = open(os.path.join(case_dir, "data.bin"), "rb").read()
    tensors = {"weight": {}, "input": {}, "output": {}}
    for line in open(os.path.join(case_dir, "manifest.txt")):
        role, name, dtype, offset, rank, *dims = line.split()
        assert len(dims) == int(rank)
        shape = [int(d) for d in dims]
        np_dtype = {"float32": np.float32, "int64": np.int64}[dtype]
        count = int(np.prod(shape)) if shape else 1
        array = np.frombuffer(blob, dtype=np_dtype, count=count, offset=int(offset))
        tensors[role][name] = torch.from_numpy(array.reshape(shape).copy())
    return tensors


def load_file_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stub_module(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


# ----------------------------------------------------------------------------- stand-ins

class _FlashSelfAttentionStandIn(nn.Module):
    def __init__(self, attention_dropout=0.0, **kwargs):
        super().__init__()


FLASH_ATTN_STAND_INS = {
    "flash_attn": dict(__version__="2.0.0"),
    "flash_attn.flash_attn_interface": dict(flash_attn_kvpacked_func=None,
                                            flash_attn_unpadded_kvpacked_func=None),
    "flash_attn.modules": {},
    "flash_attn.modules.mha": dict(FlashSelfAttention=_FlashSelfAttentionStandIn),
}


def with_stand_ins(stand_ins, load):
    """Runs load() with the given modules replaced by stand-ins, then removes them again so that
    later imports (transformers probes for flash_attn, for one) see the real environment."""
    saved = {name: sys.modules.get(name) for name in stand_ins}
    try:
        for name, attributes in stand_ins.items():
            stub_module(name, **attributes)
        return load()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def gla_recurrence(q, k, v, gk, scale=None, initial_state=None, output_final_state=False):
    """S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t, o_t = (scale q_t) S_t (spec 5.2)."""
    dtype = q.dtype
    q, k, v, gk = (t.float() for t in (q, k, v, gk))
    batch, heads, steps, dk = q.shape
    scale = dk ** -0.5 if scale is None or scale == -1 else scale
    state = torch.zeros(batch, heads, dk, v.shape[-1], dtype=torch.float32)
    if initial_state is not None:
        state = state + initial_state.float()
    out = torch.zeros_like(v)
    for i in range(steps):
        state = state * gk[:, :, i].exp()[..., None] + k[:, :, i, :, None] * v[:, :, i, None, :]
        out[:, :, i] = ((q[:, :, i] * scale)[..., None] * state).sum(-2)
    return out.to(dtype), (state if output_final_state else None)


class _RMSNormStandIn(nn.Module):
    def __init__(self, hidden_size, elementwise_affine=True, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class _FusedRMSNormSwishGateStandIn(_RMSNormStandIn):
    def forward(self, x, gate, residual=None, prenorm=False, residual_in_fp32=False):
        return super().forward(x) * F.silu(gate)


class _GLAConfigStandIn:
    def __init__(self, **kwargs):
        defaults = dict(hidden_size=2048, expand_k=0.5, expand_v=1, hidden_ratio=4,
                        intermediate_size=None, num_hidden_layers=24, num_heads=4,
                        attn_mode="fused_chunk", hidden_act="swish", clamp_min=None,
                        fuse_norm=True, rms_norm_eps=1e-6, use_cache=True, initializer_range=0.02)
        defaults.update(kwargs)
        self.__dict__.update(defaults)


class _PreTrainedModelStandIn(nn.Module):
    def __init__(self, *args, **kwargs):
        super().__init__()


def fla_stand_ins():
    config = _GLAConfigStandIn
    return {
        "fla": dict(__path__=[]),
        "fla.models": dict(__path__=[], GLAConfig=config),
        "fla.models.gla": dict(__path__=[]),
        "fla.models.gla.configuration_gla": dict(GLAConfig=config),
        "fla.modules": dict(__path__=[], FusedCrossEntropyLoss=None, RMSNorm=_RMSNormStandIn,
                            ShortConvolution=None,
                            FusedRMSNormSwishGate=_FusedRMSNormSwishGateStandIn),
        "fla.modules.activations": dict(ACT2FN={"swish": nn.SiLU(), "silu": nn.SiLU()},
                                        swiglu_linear=lambda x, y, w, b: F.linear(F.silu(x) * y,
                                                                                  w, b)),
        "fla.ops": dict(__path__=[]),
        "fla.ops.gla": dict(__path__=[], chunk_gla=gla_recurrence,
                            fused_chunk_gla=gla_recurrence, fused_recurrent_gla=gla_recurrence),
        "fla.ops.gla.naive": dict(naive_recurrent_gla=gla_recurrence),
    }


def transformers_stand_ins():
    """module_dig.py also defines a HuggingFace GLA language model that DiG never instantiates;
    stand-ins for the transformers pieces it names keep those class definitions independent of
    the installed transformers version."""
    import logging
    return {
        "transformers.cache_utils": dict(Cache=object, DynamicCache=object),
        "transformers.modeling_outputs": dict(BaseModelOutputWithPast=object,
                                              CausalLMOutputWithPast=object),
        "transformers.modeling_utils": dict(PreTrainedModel=_PreTrainedModelStandIn),
        "transformers.utils": dict(logging=types.SimpleNamespace(get_logger=logging.getLogger)),
    }


# ----------------------------------------------------------------------------- models
# Configurations mirror TestCases.h.

def build_dit(args, case):
    models = load_file_module("dit_models", os.path.join(args.dit, "models.py"))
    return models.DiT(input_size=16, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                      num_heads=4, num_classes=10, learn_sigma=True)


def build_ditmoe(args, case):
    models = sys.modules.get("ditmoe_models") or with_stand_ins(
        FLASH_ATTN_STAND_INS,
        lambda: load_file_module("ditmoe_models", os.path.join(args.ditmoe, "models.py")))

    def float32_forward(self, x):
        b, s, d = x.shape
        q, k, v = self.Wqkv(x).view(b, s, 3, self.num_heads, self.head_dim).unbind(dim=2)
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                             v.transpose(1, 2)).transpose(1, 2)
        return self.out_proj(out.reshape(b, s, d))

    models.FlashSelfMHAModified.forward = float32_forward
    return models.DiT(input_size=16, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                      num_heads=4, mlp_ratio=4, num_classes=10, num_experts=4,
                      num_experts_per_tok=2, learn_sigma=True,
                      use_flash_attn=case.endswith("qknorm"))


def build_microdit(args, case):
    package = os.path.join(args.scratch, "microdit_pkg")
    if "microdit_pkg" not in sys.modules:
        os.makedirs(package, exist_ok=True)
        for name in ("dit.py", "utils.py"):
            with open(os.path.join(args.microdit, name)) as src, \
                    open(os.path.join(package, name), "w") as dst:
                dst.write(src.read())
        open(os.path.join(package, "__init__.py"), "w").close()
        sys.path.insert(0, args.scratch)
    # utils.py imports the text encoders' and metrics' packages at module level; the DiT uses
    # none of them.
    text_encoders = {
        "open_clip": {},
        "torchmetrics": dict(Metric=nn.Module),
        "transformers": dict(CLIPTextModel=None, CLIPTokenizer=None, T5EncoderModel=None,
                             T5Tokenizer=None),
    }
    dit = sys.modules.get("microdit_pkg.dit") or with_stand_ins(
        text_encoders, lambda: importlib.import_module("microdit_pkg.dit"))
    mixer_dim = 64 if "samewidth" in case else 48
    return dit.DiT(input_size=16, patch_size=2, in_channels=4, dim=64, depth=4, head_dim=16,
                   multiple_of=32, caption_channels=48, pos_interp_scale=1.0, norm_eps=1e-6,
                   depth_init=True,
                   qkv_multipliers=np.linspace(0.5, 1.0, num=4, dtype=float),
                   ffn_multipliers=np.linspace(0.5, 4.0, num=4, dtype=float),
                   use_patch_mixer=True, patch_mixer_depth=2, patch_mixer_dim=mixer_dim,
                   patch_mixer_qkv_ratio=1.0, patch_mixer_mlp_ratio=4.0, use_bias=False,
                   num_experts=4, expert_capacity=2.0, experts_every_n=2)


def build_dig(args, case):
    if args.dig not in sys.path:
        sys.path.insert(0, args.dig)
    models_dig = sys.modules.get("models_dig") or with_stand_ins(
        {**fla_stand_ins(), **transformers_stand_ins()},
        lambda: importlib.import_module("models_dig"))
    depth = int(case[len("dig_depth"):])
    return models_dig.DiG(input_size=16, patch_size=2, in_channels=4, hidden_size=64,
                          depth=depth, num_heads=2, num_classes=10, learn_sigma=True,
                          bid_mode="layer", if_dw_conv=True, if_quad_dir=True)


def run_case(args, case, tensors):
    inputs = tensors["input"]
    if case.startswith("dit_") or case == "dit":
        model = build_dit(args, case)
    elif case.startswith("ditmoe"):
        model = build_ditmoe(args, case)
    elif case.startswith("microdit"):
        model = build_microdit(args, case)
    elif case.startswith("dig"):
        model = build_dig(args, case)
    else:
        raise ValueError(f"unknown case {case}")
    model.load_state_dict(tensors["weight"], strict=True)
    model.eval()
    with torch.no_grad():
        if case.startswith("microdit"):
            dit = sys.modules["microdit_pkg.dit"]
            captions = inputs["captions"].unsqueeze(1)  # the original's (N, 1, L, C) layout
            if "idsKeep" not in inputs:
                return model(inputs["x"], inputs["cNoise"], captions)["sample"]
            ids_keep = inputs["idsKeep"]

            def fixed_mask(batch, length, mask_ratio, device):
                rest = [sorted(set(range(length)) - set(row.tolist())) for row in ids_keep]
                ids_shuffle = torch.cat([ids_keep, torch.tensor(rest, dtype=torch.int64)], 1)
                ids_restore = torch.argsort(ids_shuffle, dim=1)
                mask = torch.ones(batch, length)
                mask[:, :ids_keep.shape[1]] = 0
                return {"mask": torch.gather(mask, 1, ids_restore), "ids_keep": ids_keep,
                        "ids_restore": ids_restore}

            dit.get_mask = fixed_mask
            tokens = inputs["x"].shape[-2] * inputs["x"].shape[-1] // 4  # patch 2
            ratio = 1.0 - ids_keep.shape[1] / tokens  # only needs to be > 0: get_mask is fixed
            return model(inputs["x"], inputs["cNoise"], captions, mask_ratio=ratio)["sample"]
        return model(inputs["x"], inputs["t"], inputs["y"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("export_dir")
    parser.add_argument("out_dir")
    for repo in ("dit", "ditmoe", "microdit", "dig"):
        parser.add_argument(f"--{repo}", required=True)
    args = parser.parse_args()
    args.scratch = os.path.join(args.out_dir, "_scratch")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    os.makedirs(args.out_dir, exist_ok=True)
    worst = 0.0
    for case in sorted(os.listdir(args.export_dir)):
        tensors = read_case(os.path.join(args.export_dir, case))
        out = run_case(args, case, tensors).float().contiguous()
        mine = tensors["output"]["cpp"]
        assert out.shape == mine.shape, (case, out.shape, mine.shape)
        out.numpy().astype("<f4").tofile(os.path.join(args.out_dir, case + ".f32"))
        diff = (out - mine).abs().max().item()
        scale = out.abs().max().item()
        worst = max(worst, diff / scale)
        print(f"{case:24s} max|ref| {scale:.4e}  max|ref - libtorch| {diff:.3e}  "
              f"relative {diff / scale:.3e}", flush=True)
    print(f"worst relative difference {worst:.3e}")


if __name__ == "__main__":
    main()
