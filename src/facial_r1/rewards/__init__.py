"""Verifiable rewards for GRPO: one class per signal, combined by :class:`CompositeReward`."""

from facial_r1.rewards.affect import AUIntensityReward, CompoundAccuracyReward, ValenceArousalReward
from facial_r1.rewards.base import RewardComponent
from facial_r1.rewards.components import AUF1Reward, ConsistencyReward, EmotionAccuracyReward, FormatReward
from facial_r1.rewards.composite import CompositeReward, RewardOutput
from facial_r1.rewards.official import OfficialAccuracyReward, OfficialAUReward, OfficialFormatReward
from facial_r1.rewards.official_paper import (
    InverseAUFrequencyWeights,
    OfficialPaperAccuracyReward,
    PaperWeightedReward,
)

__all__ = [
    "AUF1Reward",
    "AUIntensityReward",
    "CompoundAccuracyReward",
    "CompositeReward",
    "ConsistencyReward",
    "EmotionAccuracyReward",
    "FormatReward",
    "InverseAUFrequencyWeights",
    "OfficialAUReward",
    "OfficialAccuracyReward",
    "OfficialFormatReward",
    "OfficialPaperAccuracyReward",
    "PaperWeightedReward",
    "RewardComponent",
    "RewardOutput",
    "ValenceArousalReward",
]
