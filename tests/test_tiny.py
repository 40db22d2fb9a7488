from transformers import AutoModelForCausalLM, AutoTokenizer

from tuner.tiny import TINY_ARCHITECTURES


def test_tiny_models_load_through_from_pretrained(tiny_model_dirs):
    for arch in TINY_ARCHITECTURES:
        folder = tiny_model_dirs[arch]
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        ids = tokenizer("def add(a, b):\n    return a + b", return_tensors="pt").input_ids
        assert tokenizer.decode(ids[0]) == "def add(a, b):\n    return a + b"
        assert model(ids).logits.shape == (1, ids.shape[1], len(tokenizer))
        assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_tiny_architectures_have_the_attention_layouts_they_claim(tiny_model_dirs):
    mistral = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["mistral"]).config
    assert mistral.num_key_value_heads < mistral.num_attention_heads
    explicit = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["mistral_head_dim"]).config
    assert explicit.head_dim * explicit.num_attention_heads != explicit.hidden_size
    bigcode = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt_bigcode"]).config
    assert bigcode.multi_query


def test_chat_template_ends_assistant_turn_with_eos(tiny_tokenizer):
    text = tiny_tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], tokenize=False
    )
    assert text.endswith("hello" + tiny_tokenizer.eos_token + "\n")
