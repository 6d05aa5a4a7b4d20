"""Stage 1: supervised fine-tuning on teacher-written reasoning, as a LightningModule.

The loss is token cross-entropy on the assistant turn only (reasoning, answer and the end-of-turn token); prompt,
image and padding tokens carry label -100 (see ``Qwen25VLFamily.encode_sft``).
"""

from __future__ import annotations

import torch

from facial_r1.training.base import StageModule


class SFTModule(StageModule):
    def training_step(self, batch: dict[str, list], batch_idx: int) -> torch.Tensor:
        records, images = batch["records"], batch["images"]
        texts = [self.prompt.sft_text(r) for r in records]  # user prompt, or an instruction row's
        encoded = self.adapter.encode_sft(images, texts, [r["description"] for r in records]).to(self.device)
        loss, num_tokens = self.adapter.sft_loss(encoded)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(records))
        self.log("train/target_tokens", float(num_tokens), batch_size=len(records))
        return loss
