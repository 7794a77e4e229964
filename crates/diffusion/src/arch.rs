//! The diffusion and video architectures ComfyUI-GGUF converts, as data:
//! how `tools/convert.py` detects each and which tensors it keeps in F32,
//! and what `tools/lcpp.patch` (its llama-quantize patch) never quantizes
//! or keeps 3-D. Sources, at ComfyUI-GGUF 795e451: `convert.py` lines
//! 26–149 (the `Model*` classes and `arch_list`), `lcpp.patch` lines
//! 271–319 (`gguf_set_tensor_ndim` fixes) and 327–429 (the per-arch
//! `quantize &=` rules).

/// One architecture's rules.
#[derive(Debug)]
pub struct Arch {
    /// `general.architecture` (convert.py's `arch`).
    pub name: &'static str,
    /// SD1/SDXL: tensors reshaped to rows of 256 (`shape_fix`).
    pub shape_fix: bool,
    /// Key groups: the architecture is this one when every key of one
    /// group is present (`keys_detect`).
    pub detect: &'static [&'static [&'static str]],
    /// Keys that mark the diffusers layout, refused (`keys_banned`).
    pub banned: &'static [&'static str],
    /// Name fragments kept in F32 from F32/BF16 sources (`keys_hiprec`).
    pub hiprec: &'static [&'static str],
    /// Name fragments of tensors dropped (`keys_ignore`).
    pub ignore: &'static [&'static str],
    /// lcpp.patch: fragments (`name.find(x) != npos`) never quantized.
    pub keep_containing: &'static [&'static str],
    /// lcpp.patch: whole names (`name != x`) never quantized.
    pub keep_named: &'static [&'static str],
    /// lcpp.patch's `gguf_set_tensor_ndim(…, 3)`: tensors written 3-D
    /// although their outermost dimension is 1, by whole name…
    pub three_d_named: &'static [&'static str],
    /// …or by fragment.
    pub three_d_containing: &'static [&'static str],
    /// More than 4 dimensions are carried (HunyuanVideo and Wan's conv3d
    /// weights, which convert.py sets aside for `fix_5d_tensors.py`);
    /// elsewhere convert.py refuses them.
    pub five_d: bool,
}

const fn arch(name: &'static str) -> Arch {
    Arch {
        name,
        shape_fix: false,
        detect: &[],
        banned: &[],
        hiprec: &[],
        ignore: &[],
        keep_containing: &[],
        keep_named: &[],
        three_d_named: &[],
        three_d_containing: &[],
        five_d: false,
    }
}

/// Flux's and HunyuanVideo's embedders and final layer (lcpp.patch
/// 329–337 and 380–388 list the same fragments).
const FLUX_KEEP: &[&str] = &[
    "txt_in.",
    "img_in.",
    "time_in.",
    "vector_in.",
    "guidance_in.",
    "final_layer.",
];

/// SD 1.x and SDXL (lcpp.patch 338–349).
const UNET_KEEP: &[&str] = &[
    "class_embedding.",
    "time_embedding.",
    "add_embedding.",
    "time_embed.",
    "label_emb.",
    "conv_in.",
    "conv_out.",
];
const UNET_KEEP_NAMED: &[&str] = &["input_blocks.0.0.weight", "out.2.weight"];

/// In convert.py's `arch_list` order (line 148): the first that matches wins.
pub static ARCHES: &[Arch] = &[
    Arch {
        detect: &[
            &["transformer_blocks.0.attn.norm_added_k.weight"],
            &["double_blocks.0.img_attn.proj.weight"],
        ],
        banned: &["transformer_blocks.0.attn.norm_added_k.weight"],
        keep_containing: FLUX_KEEP,
        ..arch("flux")
    },
    Arch {
        detect: &[
            &["transformer_blocks.0.attn.add_q_proj.weight"],
            &["joint_blocks.0.x_block.attn.qkv.weight"],
        ],
        banned: &["transformer_blocks.0.attn.add_q_proj.weight"],
        keep_containing: &[
            "final_layer.",
            "time_text_embed.",
            "context_embedder.",
            "t_embedder.",
            "y_embedder.",
            "x_embedder.",
        ],
        keep_named: &["proj_out.weight", "pos_embed"],
        three_d_named: &["pos_embed"],
        ..arch("sd3")
    },
    Arch {
        detect: &[
            &["double_layers.3.modX.1.weight"],
            &["joint_transformer_blocks.3.ff_context.out_projection.weight"],
        ],
        banned: &["joint_transformer_blocks.3.ff_context.out_projection.weight"],
        keep_containing: &["t_embedder.", "init_x_linear."],
        keep_named: &[
            "modF.1.weight",
            "cond_seq_linear.weight",
            "final_linear.weight",
            "positional_encoding",
            "register_tokens",
        ],
        three_d_named: &["positional_encoding", "register_tokens"],
        ..arch("aura")
    },
    Arch {
        detect: &[&[
            "caption_projection.0.linear.weight",
            "double_stream_blocks.0.block.ff_i.shared_experts.w3.weight",
        ]],
        hiprec: &[".ff_i.gate.weight", "img_emb.emb_pos"],
        keep_containing: &[
            "p_embedder.",
            "t_embedder.",
            "x_embedder.",
            "final_layer.",
            ".ff_i.gate.weight",
            "caption_projection.",
        ],
        ..arch("hidream")
    },
    Arch {
        detect: &[&[
            "blocks.0.mlp.layer1.weight",
            "blocks.0.adaln_modulation_cross_attn.1.weight",
        ]],
        hiprec: &["pos_embedder"],
        ignore: &["_extra_state", "accum_"],
        keep_containing: &[
            "p_embedder.",
            "t_embedder.",
            "t_embedding_norm.",
            "x_embedder.",
            "pos_embedder.",
            "final_layer.",
        ],
        ..arch("cosmos")
    },
    Arch {
        detect: &[&[
            "adaln_single.emb.timestep_embedder.linear_2.weight",
            "transformer_blocks.27.scale_shift_table",
            "caption_projection.linear_2.weight",
        ]],
        hiprec: &["scale_shift_table"],
        keep_containing: &[
            "adaln_single.",
            "caption_projection.",
            "patchify_proj.",
            "proj_out.",
            "scale_shift_table",
        ],
        ..arch("ltxv")
    },
    Arch {
        detect: &[&[
            "double_blocks.0.img_attn_proj.weight",
            "txt_in.individual_token_refiner.blocks.1.self_attn_qkv.weight",
        ]],
        keep_containing: FLUX_KEEP,
        five_d: true,
        ..arch("hyvid")
    },
    Arch {
        detect: &[&[
            "blocks.0.self_attn.norm_q.weight",
            "text_embedding.2.weight",
            "head.modulation",
        ]],
        hiprec: &[".modulation"],
        keep_containing: &[
            "modulation.",
            "patch_embedding.",
            "text_embedding.",
            "time_projection.",
            "time_embedding.",
            "img_emb.",
            "head.",
        ],
        three_d_named: &["img_emb.emb_pos"],
        three_d_containing: &[".modulation"],
        five_d: true,
        ..arch("wan")
    },
    Arch {
        shape_fix: true,
        detect: &[
            &[
                "down_blocks.0.downsamplers.0.conv.weight",
                "add_embedding.linear_1.weight",
            ],
            &[
                "input_blocks.3.0.op.weight",
                "input_blocks.6.0.op.weight",
                "output_blocks.2.2.conv.weight",
                "output_blocks.5.2.conv.weight",
            ],
            &["label_emb.0.0.weight"],
        ],
        keep_containing: UNET_KEEP,
        keep_named: UNET_KEEP_NAMED,
        ..arch("sdxl")
    },
    Arch {
        shape_fix: true,
        detect: &[
            &["down_blocks.0.downsamplers.0.conv.weight"],
            &[
                "input_blocks.3.0.op.weight",
                "input_blocks.6.0.op.weight",
                "input_blocks.9.0.op.weight",
                "output_blocks.2.1.conv.weight",
                "output_blocks.5.2.conv.weight",
                "output_blocks.8.2.conv.weight",
            ],
        ],
        keep_containing: UNET_KEEP,
        keep_named: UNET_KEEP_NAMED,
        ..arch("sd1")
    },
    Arch {
        detect: &[&["cap_embedder.1.weight", "context_refiner.0.attention.qkv.weight"]],
        keep_containing: &[
            "t_embedder.",
            "x_embedder.",
            "final_layer.",
            "cap_embedder.",
            "context_refiner.",
            "noise_refiner.",
        ],
        ..arch("lumina2")
    },
];

impl Arch {
    /// Whether lcpp.patch lets llama-quantize quantize this tensor at all
    /// for this architecture (its fragment and name lists).
    pub fn allows_quantization(&self, name: &str) -> bool {
        !self.keep_containing.iter().any(|f| name.contains(f)) && !self.keep_named.contains(&name)
    }

    /// convert.py's `keys_hiprec` test.
    pub fn high_precision(&self, name: &str) -> bool {
        self.hiprec.iter().any(|f| name.contains(f))
    }

    /// convert.py's `keys_ignore` test.
    pub fn ignored(&self, name: &str) -> bool {
        self.ignore.iter().any(|f| name.contains(f))
    }

    /// lcpp.patch's 3-D fixes: the tensor keeps an outer dimension of 1.
    pub fn keeps_three_dims(&self, name: &str) -> bool {
        self.three_d_named.contains(&name) || self.three_d_containing.iter().any(|f| name.contains(f))
    }

    /// The architecture named `name` (`general.architecture`).
    pub fn named(name: &str) -> Option<&'static Arch> {
        ARCHES.iter().find(|a| a.name == name)
    }
}
