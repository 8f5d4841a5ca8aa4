"""The Llama 3 family against an independent implementation and the published figures.

The reference is ``transformers``' ``LlamaForCausalLM`` (a test dependency), built from a
``LlamaConfig`` with no download: the same random weights are copied across by name, and the
logits must agree to float32 rounding. The weights are drawn wider than the model's own
initialisation (std 0.25), so that attention is sharp and positions matter: with the small
init, attention is nearly uniform and a wrong rotary embedding would hardly change a logit.
"""

from __future__ import annotations

import pytest
import torch

from models import count_parameters, create_model, get_model_info, list_models
from models.llama import Llama, LlamaConfig, rope_frequencies

transformers = pytest.importorskip("transformers")

# Published parameter counts: the models' safetensors as released on Hugging Face
# (meta-llama/Llama-3.2-1B 1,235,814,400; -3.2-3B 3,212,749,824; -3.1-8B 8,030,261,248;
# -3.1-70B 70,553,706,496; -3.1-405B 405,853,388,800: its index's total_size, 811,706,777,600
# bytes of bf16, over 2), tied embeddings counted once.
PUBLISHED = {"llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824,
             "llama3.1-8b": 8_030_261_248, "llama3.1-70b": 70_553_706_496,
             "llama3.1-405b": 405_853_388_800}
# The published config.json of each (Hugging Face meta-llama/...): width, SwiGLU hidden width,
# layers, query heads, key/value heads, tied embeddings; all read the 128,256-token vocabulary.
PUBLISHED_CONFIGS = {
    "llama3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=True),
    "llama3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                        num_attention_heads=24, num_key_value_heads=8, tie_word_embeddings=True),
    "llama3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False),
    "llama3.1-70b": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                         num_attention_heads=64, num_key_value_heads=8,
                         tie_word_embeddings=False),
    "llama3.1-405b": dict(hidden_size=16384, intermediate_size=53248, num_hidden_layers=126,
                          num_attention_heads=128, num_key_value_heads=8,
                          tie_word_embeddings=False),
}


def hf_twin(cfg: LlamaConfig):
    """``LlamaForCausalLM`` of the same shape, configured as the Hugging Face model cards do."""
    rope = None
    if cfg.rope_factor is not None:
        rope = {"rope_type": "llama3", "factor": cfg.rope_factor,
                "low_freq_factor": cfg.rope_low_freq_factor,
                "high_freq_factor": cfg.rope_high_freq_factor,
                "original_max_position_embeddings": cfg.rope_original_context}
    hf_cfg = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.dim, intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads, rms_norm_eps=cfg.norm_eps,
        max_position_embeddings=131072, rope_theta=cfg.rope_theta, rope_scaling=rope,
        tie_word_embeddings=cfg.tie_embeddings, attention_bias=False, mlp_bias=False,
        attn_implementation="eager")
    return transformers.LlamaForCausalLM(hf_cfg).eval()


def copy_into(hf, model: Llama) -> None:
    """Our weights into the twin, by Hugging Face's names (every key must match)."""
    state = {"model.embed_tokens.weight": model.tok_embeddings.weight,
             "model.norm.weight": model.norm.weight, "lm_head.weight": model.output.weight}
    for i, block in enumerate(model.layers):
        p, att, ffn = f"model.layers.{i}.", block.attention, block.feed_forward
        state.update({
            p + "self_attn.q_proj.weight": att.wq.weight,
            p + "self_attn.k_proj.weight": att.wk.weight,
            p + "self_attn.v_proj.weight": att.wv.weight,
            p + "self_attn.o_proj.weight": att.wo.weight,
            p + "mlp.gate_proj.weight": ffn.w1.weight, p + "mlp.up_proj.weight": ffn.w3.weight,
            p + "mlp.down_proj.weight": ffn.w2.weight,
            p + "input_layernorm.weight": block.attention_norm.weight,
            p + "post_attention_layernorm.weight": block.ffn_norm.weight})
    result = hf.load_state_dict({k: v.detach().clone() for k, v in state.items()}, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) <= {"lm_head.weight"}  # tied: the embedding's, shared


@pytest.mark.parametrize("shape", [
    # llama3-debug's shape: grouped-query attention (2 kv heads for 4), Llama 3.1 scaling
    dict(dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_hidden=192),
    # Llama 3.2's: tied output head, scaling factor 32, 8 query heads per kv head
    dict(dim=128, n_layers=2, n_heads=8, n_kv_heads=1, ffn_hidden=256, rope_factor=32.0,
         tie_embeddings=True),
    # plain RoPE (no scaling), multi-head attention
    dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=4, ffn_hidden=160, rope_factor=None),
], ids=["gqa-rope-scaled", "tied-factor32", "mha-plain-rope"])
def test_logits_match_transformers(shape):
    cfg = LlamaConfig(vocab_size=512, block_size=256, **shape)
    torch.manual_seed(0)
    model = Llama(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.25)
    hf = hf_twin(cfg)
    copy_into(hf, model)
    x = torch.randint(0, cfg.vocab_size, (2, 256), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, theirs = model(x), hf(x).logits
    assert ours.shape == theirs.shape == (2, 256, 512)
    # float32 rounding: measured 1.4e-6 to 3.1e-6 over the three shapes; a rotary embedding
    # scaled by 2 instead of 8 moves the logits by 1.5e-2
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-5)


def test_rope_frequencies_match_transformers():
    """Llama 3.1's frequency scaling, against transformers' own implementation of it."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    cfg = LlamaConfig(dim=4096, n_heads=32, rope_factor=8.0)
    hf_cfg = hf_twin(LlamaConfig(vocab_size=8, dim=4096, n_layers=1, n_heads=32,
                                 n_kv_heads=8, ffn_hidden=8)).config
    theirs, _ = ROPE_INIT_FUNCTIONS["llama3"](hf_cfg, "cpu")
    torch.testing.assert_close(rope_frequencies(cfg), theirs.float(), rtol=1e-6, atol=0)
    plain = rope_frequencies(LlamaConfig(dim=4096, n_heads=32, rope_factor=None))
    assert (plain[-1] / rope_frequencies(cfg)[-1]).item() == pytest.approx(8.0)  # longest: /8
    assert plain[0] == rope_frequencies(cfg)[0]  # shortest wavelength kept


def count_by_hand(hidden_size: int, intermediate_size: int, num_hidden_layers: int,
                  num_attention_heads: int, num_key_value_heads: int,
                  tie_word_embeddings: bool, vocab_size: int = 128_256) -> int:
    """A Llama's parameters from its config.json: per layer the q/o projections (width x
    heads x head width), k/v (width x kv heads x head width), the SwiGLU's three matrices and two
    norms; then the embedding, the output head (unless tied) and the final norm."""
    head = hidden_size // num_attention_heads
    layer = (2 * hidden_size * num_attention_heads * head
             + 2 * hidden_size * num_key_value_heads * head
             + 3 * hidden_size * intermediate_size + 2 * hidden_size)
    tables = vocab_size * hidden_size * (1 if tie_word_embeddings else 2)
    return num_hidden_layers * layer + tables + hidden_size


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_have_the_published_parameter_counts(name):
    assert count_by_hand(**PUBLISHED_CONFIGS[name]) == PUBLISHED[name]
    assert count_parameters(name, use_declared=False) == PUBLISHED[name]  # built on meta
    assert count_parameters(name) == PUBLISHED[name]  # as declared


def test_presets_read_the_llama3_vocabulary_and_train_on_token_ids():
    for name in PUBLISHED:
        info = get_model_info(name)
        assert (info.vocab_size, info.input_shape, info.default_dataset) == (
            128_256, (8192,), "synthetic-tokens")
    debug = get_model_info("llama3-debug")
    assert (debug.vocab_size, debug.input_shape) == (2048, (64,))
    assert [m for m in list_models("llama3*")] == ["llama3-debug", *sorted(PUBLISHED)]


def test_ties_the_head_where_the_published_model_does():
    assert create_model("llama3-debug").output.weight is not None
    with torch.device("meta"):
        one_b = create_model("llama3.2-1b")
        eight_b = create_model("llama3.1-8b")
    assert one_b.output.weight is one_b.tok_embeddings.weight
    assert eight_b.output.weight is not eight_b.tok_embeddings.weight


def test_the_model_is_causal_and_takes_the_context_it_is_given():
    model = create_model("llama3-debug", vocab_size=100, block_size=32).eval()
    x = torch.randint(0, 100, (1, 32), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[0, 20:] = (y[0, 20:] + 1) % 100  # change only the future
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[0, :20], b[0, :20])
    assert not torch.allclose(a[0, 20:], b[0, 20:])
    with pytest.raises(ValueError, match="exceeds block_size 32"):
        model(torch.zeros(1, 33, dtype=torch.long))
