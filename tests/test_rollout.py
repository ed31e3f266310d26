import torch

from projected_grpo.model import load_model
from projected_grpo.rollout import Row, pack, token_logprobs


def test_token_logprobs_match_the_full_log_softmax_on_completion_positions_only():
    model, tok = load_model("tiny-random-qwen3", "cpu", seed=0)
    rows = [Row([5, 6, 7], [8, 9, tok.eos_token_id], ""), Row([5, 6], [10, tok.eos_token_id], "")]  # unequal: padding
    ids, attn, comp = pack(rows, tok.pad_token_id, "cpu")
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids, attention_mask=attn.long()).logits[:, :-1].float(), -1)
        want = full.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        got = token_logprobs(model, ids, attn, comp)
    assert comp.sum() == 5
    torch.testing.assert_close(got[comp], want[comp], rtol=1e-5, atol=1e-5)
    assert (got[~comp] == 0).all()
