"""Create a tiny randomly initialised Llama and a locally trained BPE tokenizer, fully offline.

Used by the real-vLLM test: the weights are random, so outputs are noise, but the server runs
its whole request path (tokenizer, chat template, scheduler, sampler, logs, /metrics).
"""

import glob
import os
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

out = sys.argv[1] if len(sys.argv) > 1 else ".tools/tiny-llama"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
corpus = sorted(glob.glob(os.path.join(os.path.dirname(os.__file__), "*.py")))[:200]
tok = Tokenizer(models.BPE(unk_token=None))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=1024, special_tokens=["<s>", "</s>", "<pad>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train(corpus, trainer)
tok.post_processor = processors.TemplateProcessing(
    single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
hf_tok.chat_template = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                        "{% if add_generation_prompt %}assistant: {% endif %}")
hf_tok.save_pretrained(out)
cfg = LlamaConfig(vocab_size=len(hf_tok), hidden_size=128, intermediate_size=256,
                  num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, head_dim=64,
                  max_position_embeddings=2048, bos_token_id=hf_tok.bos_token_id,
                  eos_token_id=hf_tok.eos_token_id, pad_token_id=hf_tok.pad_token_id,
                  tie_word_embeddings=False)
LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(out)
