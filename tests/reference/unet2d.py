"""diffusers' UNet2DModel (0.31.0) in plain PyTorch, written for diffusion.c's export test from
diffusers' source semantics, independently of the C code: the same module tree and state_dict
names, so a diffusers UNet2DModel folder loads into it with load_state_dict(strict=True).
check_export.py first checks it against diffusers' own outputs (tests/fixtures), then uses it to
judge what diffusion.c writes.

Covers what UNet2DModel builds by default and what diffusion.c writes: positional time
embedding (flip_sin_to_cos, freq_shift), class embeddings (num_class_embeds), DownBlock2D /
AttnDownBlock2D, the mid block (resnet, attention, resnet; attn_norm_num_groups),
UpBlock2D / AttnUpBlock2D, Ho et al.'s padding (downsample_padding 0), attention_head_dim null
(one head). Anything else in a config is refused (KeyError / ValueError).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def timestep_embedding(t, dim, flip_sin_to_cos, shift, max_period=10000):
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - shift)
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.conv_shortcut(x) if self.conv_shortcut is not None else x) + h


class Attention(nn.Module):
    """Self-attention over pixels with a group norm in front and the residual added."""

    def __init__(self, c, head_dim, groups, eps):
        super().__init__()
        self.heads, self.head_dim = c // head_dim, head_dim
        self.group_norm = nn.GroupNorm(groups, c, eps=eps)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c), nn.Dropout(0.0)])

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.group_norm(x).view(b, c, h * w).transpose(1, 2)

        def split(z):
            return z.view(b, h * w, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.to_q(y)), split(self.to_k(y)), split(self.to_v(y))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        o = (a @ v).transpose(1, 2).reshape(b, h * w, c)
        o = self.to_out[0](o).transpose(1, 2).reshape(b, c, h, w)
        return o + x


class Downsample(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))  # Ho et al.: zero pad right and bottom
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Block(nn.Module):
    """DownBlock2D / AttnDownBlock2D (skips None) or UpBlock2D / AttnUpBlock2D."""

    def __init__(self, ins, cout, temb, attn, head_dim, groups, eps, sampler, up):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(ci, cout, temb, groups, eps) for ci in ins])
        if attn:
            self.attentions = nn.ModuleList(
                [Attention(cout, head_dim or cout, groups, eps) for _ in ins])
        else:
            self.attentions = None
        # diffusers' names: downsamplers.0.conv, upsamplers.0.conv
        self.sampler_name = "upsamplers" if up else "downsamplers"
        if sampler is not None:
            self.add_module(self.sampler_name, nn.ModuleList([sampler]))

    def forward(self, x, temb, skips=None):
        out = []
        for j, r in enumerate(self.resnets):
            if skips is not None:
                x = torch.cat([x, skips.pop()], dim=1)
            x = r(x, temb)
            if self.attentions is not None:
                x = self.attentions[j](x)
            out.append(x)
        if hasattr(self, self.sampler_name):
            x = getattr(self, self.sampler_name)[0](x)
            out.append(x)
        return x, out


class UNet2DModel(nn.Module):
    SUPPORTED = {"_class_name", "_diffusers_version", "sample_size", "in_channels",
                 "out_channels", "block_out_channels", "layers_per_block", "down_block_types",
                 "up_block_types", "norm_num_groups", "norm_eps", "attention_head_dim",
                 "flip_sin_to_cos", "freq_shift", "downsample_padding", "dropout",
                 "num_class_embeds", "attn_norm_num_groups", "add_attention", "act_fn",
                 "center_input_sample", "time_embedding_type", "mid_block_scale_factor",
                 "resnet_time_scale_shift", "class_embed_type", "num_train_timesteps",
                 "downsample_type", "upsample_type", "_name_or_path"}

    def __init__(self, cfg):
        super().__init__()
        extra = set(cfg) - self.SUPPORTED
        if extra:
            raise KeyError(f"config keys this reference does not build: {sorted(extra)}")
        fixed = {"act_fn": "silu", "center_input_sample": False, "add_attention": True,
                 "time_embedding_type": "positional", "mid_block_scale_factor": 1,
                 "resnet_time_scale_shift": "default", "class_embed_type": None,
                 "downsample_type": "conv", "upsample_type": "conv"}
        for k, v in fixed.items():
            if k in cfg and cfg[k] != v and not (k == "act_fn" and cfg[k] == "swish"):
                raise ValueError(f"{k} = {cfg[k]}: this reference builds {v} only")
        boc = list(cfg["block_out_channels"])
        groups, eps = cfg.get("norm_num_groups", 32), cfg.get("norm_eps", 1e-5)
        hd = cfg.get("attention_head_dim", 8)
        L = cfg.get("layers_per_block", 2)
        temb = boc[0] * 4
        self.flip, self.shift = cfg.get("flip_sin_to_cos", True), cfg.get("freq_shift", 0)
        self.conv_in = nn.Conv2d(cfg["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        n_cls = cfg.get("num_class_embeds")
        self.class_embedding = nn.Embedding(n_cls, temb) if n_cls else None
        self.down_blocks = nn.ModuleList()
        c = boc[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            final = i == len(boc) - 1
            sampler = None if final else Downsample(boc[i], cfg.get("downsample_padding", 1))
            self.down_blocks.append(Block([c] + [boc[i]] * (L - 1), boc[i], temb,
                                          kind == "AttnDownBlock2D", hd, groups, eps, sampler, False))
            c = boc[i]
        attn_groups = cfg.get("attn_norm_num_groups") or groups
        self.mid_block = nn.Module()
        self.mid_block.resnets = nn.ModuleList([Resnet(c, c, temb, groups, eps) for _ in (0, 1)])
        self.mid_block.attentions = nn.ModuleList([Attention(c, hd or c, attn_groups, eps)])
        rev = boc[::-1]
        self.up_blocks = nn.ModuleList()
        out = rev[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            prev, out = out, rev[i]
            skip_in = rev[min(i + 1, len(boc) - 1)]
            ins = [(prev if j == 0 else out) + (skip_in if j == L else out) for j in range(L + 1)]
            sampler = None if i == len(boc) - 1 else Upsample(out)
            self.up_blocks.append(Block(ins, out, temb, kind == "AttnUpBlock2D", hd, groups, eps,
                                        sampler, True))
        self.conv_norm_out = nn.GroupNorm(groups, boc[0], eps=eps)
        self.conv_out = nn.Conv2d(boc[0], cfg.get("out_channels", cfg["in_channels"]), 3, padding=1)

    def forward(self, x, t, class_labels=None):
        emb = self.time_embedding(timestep_embedding(t, self.conv_in.out_channels, self.flip,
                                                     self.shift))
        if self.class_embedding is not None:
            emb = emb + self.class_embedding(class_labels)
        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            x, out = blk(x, emb)
            skips += out
        x = self.mid_block.resnets[0](x, emb)
        x = self.mid_block.attentions[0](x)
        x = self.mid_block.resnets[1](x, emb)
        for blk in self.up_blocks:
            x, _ = blk(x, emb, skips)
        return self.conv_out(F.silu(self.conv_norm_out(x)))
