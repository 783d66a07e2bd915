"""Greedy decoding through a decoder stack whose layers may be skipped per sample.

A sample skips, at every decoding step, exactly the layers it skipped for the prompt (the
batch's trace of executed layers, or an explicit ``keep`` [B, L]). With the KV cache each step
feeds one token; without it (the reference) every step re-runs the prompt plus the tokens so
far, sample by sample, through the model's own forward, so positions and masks are the model's.
Positions of cached steps continue from the prompt's last position id as the model computed it
(1-based for PaliGemma, multimodal-rotary for Qwen2-VL), so padding in a batch changes nothing
(a model whose forward takes no ``position_ids`` is decoded without the cache when lengths differ).
"""

from __future__ import annotations

import torch

from .decoder_stack import HFTokenBatch, record_layer_inputs


class DecodingMixin:
    """Decoding methods of :class:`~.hf_teacher.HFVLATeacher` (uses its model, stack and embedding)."""

    def run_routed_layers(self, hidden: torch.Tensor, batch: HFTokenBatch, keep: torch.Tensor) -> torch.Tensor:
        """Every layer on the rows whose ``keep`` [B, L] is true (skipped layers are not called)."""
        keep = keep.cpu().bool()
        size = hidden.shape[0]
        for index in range(self.num_layers):
            rows = keep[:, index].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            if rows.numel() == size:
                hidden = self.run_layer(index, hidden, batch)
            else:
                rows_dev = rows.to(hidden.device)
                hidden = hidden.clone()
                hidden[rows_dev] = self.run_layer(index, hidden[rows_dev], batch.select(rows_dev))
        return hidden

    def _continuation_batch(self, inputs: dict, cache) -> HFTokenBatch:
        """The layer inputs of new tokens continuing a cached prompt: text only, every new token
        attended (the cache holds the prompt's own mask), each layer's call as the model makes it."""
        rec = record_layer_inputs(self.model, self._stack, inputs)
        ones = torch.ones(rec.hidden.shape[:2], dtype=torch.bool, device=rec.hidden.device)
        return HFTokenBatch(hidden=rec.hidden, vision_mask=~ones, text_mask=ones, attention_mask=ones,
                            layer_kwargs=rec.calls[0][1], calls=rec.calls, cache=cache)

    def next_token_logits(self, last_hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.final_norm(last_hidden)).float()

    @staticmethod
    def _argmax(logits: torch.Tensor, allowed: tuple[int, int] | None) -> torch.Tensor:
        if allowed is not None:
            lo, hi = allowed
            logits = logits.clone()
            logits[:, :lo] = float("-inf")
            logits[:, hi:] = float("-inf")
        return logits.argmax(-1)

    @torch.no_grad()
    def decode_after_prefill(
        self,
        batch: HFTokenBatch,
        hidden: torch.Tensor,
        steps: int,
        allowed: tuple[int, int] | None = None,
        return_logits: bool = False,
    ):
        """Greedy tokens [B, steps] continuing a prefill whose last-layer output is ``hidden``.

        Each sample skips, at every step, exactly the layers its prefill skipped (the batch's
        trace); with the batch's KV cache each step feeds one token, without it every step re-runs
        the whole sequence (:meth:`decode_tokens` with ``use_cache=False``)."""
        if batch.root is not None:
            raise ValueError("decode_after_prefill needs the whole batch, not a row selection")
        keep = batch.executed.clone()
        # a model whose forward takes no position_ids (the official Prismatic code) would number the
        # new tokens of a shorter, right-padded prompt after the padding: re-run those exactly instead
        mixed_lengths = not self._takes_position_ids and len(set(batch.lengths.tolist())) > 1
        if batch.cache is None or mixed_lengths:
            return self.decode_tokens(
                batch.prompt, keep, steps, use_cache=False, allowed=allowed, return_logits=return_logits
            )
        size = hidden.shape[0]
        lengths = batch.lengths
        logits = [self.next_token_logits(hidden[torch.arange(size), lengths - 1])]
        token = self._argmax(logits[-1], allowed)
        tokens = [token]
        cache = batch.cache
        cache.tokens_seen = hidden.shape[1]
        attention = batch.attention_mask.long()
        for step in range(1, steps):
            attention = torch.cat([attention, attention.new_ones(size, 1)], dim=1)
            step_inputs = {
                "input_ids": token[:, None],
                "attention_mask": attention,
                self._cache_arg: cache,
                "use_cache": True,
            }
            if self._takes_position_ids:
                step_inputs["position_ids"] = (batch.last_position + step)[:, None].to(hidden.device)
            step_batch = self._continuation_batch(step_inputs, cache)
            out = self.run_routed_layers(step_batch.hidden, step_batch, keep)
            cache.tokens_seen += 1
            logits.append(self.next_token_logits(out[:, -1]))
            token = self._argmax(logits[-1], allowed)
            tokens.append(token)
        tokens = torch.stack(tokens, dim=1)
        return (tokens, torch.stack(logits, dim=1)) if return_logits else tokens

    def teacher_forced_logits(self, batch: HFTokenBatch, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next-token logits [B, N, V] for ground-truth continuation ``tokens`` [B, N] of the prompt whose
        last-layer output is ``hidden``: position 0 from the prompt, the others from one pass of
        ``tokens[:, :-1]`` through the layers that ran for each sample (with gradients)."""
        if batch.cache is None or batch.root is not None:
            raise ValueError("teacher forcing continues the prompt's KV cache: pass the whole batch from embed()")
        if self.gradient_checkpointing:
            raise ValueError(
                "the action_tokens head continues the prompt's KV cache, which activation checkpointing "
                "would recompute into twice: set memory.gradient_checkpointing: false"
            )
        size = hidden.shape[0]
        logits = [self.next_token_logits(hidden[torch.arange(size), batch.lengths - 1])[:, None]]
        if tokens.shape[1] > 1:
            feed = tokens[:, :-1].to(hidden.device)
            steps = feed.shape[1]
            cache = batch.cache
            cache.tokens_seen = hidden.shape[1]
            attention = torch.cat([batch.attention_mask.long(), feed.new_ones(size, steps)], dim=1)
            inputs = {"input_ids": feed, "attention_mask": attention, self._cache_arg: cache, "use_cache": True}
            if self._takes_position_ids:
                offsets = torch.arange(1, steps + 1)[None]
                inputs["position_ids"] = (batch.last_position[:, None] + offsets).to(hidden.device)
            step_batch = self._continuation_batch(inputs, cache)
            out = self.run_routed_layers(step_batch.hidden, step_batch, batch.executed)
            cache.tokens_seen += steps
            logits.append(self.next_token_logits(out))
        return torch.cat(logits, dim=1)

    @torch.no_grad()
    def decode_tokens(
        self,
        inputs: dict[str, torch.Tensor],
        keep: torch.Tensor | None = None,
        steps: int = 7,
        use_cache: bool = True,
        allowed: tuple[int, int] | None = None,
        return_logits: bool = False,
    ):
        """Greedy decoding [B, steps] of prepared ``inputs`` running only the layers ``keep`` [B, L] allows
        (with ``return_logits`` also the logits [B, steps, V] each token was chosen from).

        ``use_cache=False`` is the reference: each step re-runs the prompt plus the tokens so far,
        sample by sample, through the model's own forward (its own positions and masks)."""
        size = inputs["input_ids"].shape[0]
        keep = torch.ones(size, self.num_layers, dtype=torch.bool) if keep is None else keep.cpu().bool()
        if use_cache:
            model_inputs, valid = self._model_inputs(inputs)
            batch = self._embed(model_inputs, valid, inputs, with_cache=True)
            hidden = self.run_routed_layers(batch.hidden, batch, keep)
            return self.decode_after_prefill(batch, hidden, steps, allowed, return_logits)
        fields, pixels = inputs["input_ids"], inputs["pixels"]
        rows, row_logits = [], []
        for row in range(size):
            prompt = fields[row, :, : int((fields[row, 1] > 0).sum())]
            generated: list[int] = []
            step_logits = []
            for _ in range(steps):
                tail = torch.tensor(
                    [[self._generated_field(name, token) for token in generated] for name in self.token_fields],
                    dtype=torch.long,
                )
                tail = tail.reshape(len(self.token_fields), len(generated))
                sequence = {"pixels": pixels[row : row + 1], "input_ids": torch.cat([prompt, tail], dim=1)[None]}
                model_inputs, valid = self._model_inputs(sequence)
                batch = self._embed(model_inputs, valid, sequence, with_cache=False)
                hidden = self.run_routed_layers(batch.hidden, batch, keep[row : row + 1])
                step_logits.append(self.next_token_logits(hidden[:, -1])[0])
                generated.append(int(self._argmax(step_logits[-1][None], allowed)[0]))
            rows.append(generated)
            row_logits.append(torch.stack(step_logits))
        tokens = torch.tensor(rows, dtype=torch.long, device=self.device)
        return (tokens, torch.stack(row_logits)) if return_logits else tokens

    def _generated_field(self, name: str, token: int) -> int:
        if name == "input_ids":
            return token
        if name == "attention_mask":
            return 1
        return self.family.generated_token_fields.get(name, 0)
