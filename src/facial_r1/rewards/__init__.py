"""Verifiable rewards for GRPO: one class per signal, combined by :class:`CompositeReward`."""

from facial_r1.rewards.affect import AUIntensityReward, CompoundAccuracyReward, ValenceArousalReward
from facial_r1.rewards.base import RewardComponent
from facial_r1.rewards.components import AUF1Reward, ConsistencyReward, EmotionAccuracyReward, FormatReward
from facial_r1.rewards.composite import CompositeReward, RewardOutput
from facial_r1.rewards.official import OfficialAccuracyReward, OfficialAUReward, OfficialFormatReward

__all__ = [
    "AUF1Reward",
    "AUIntensityReward",
    "CompoundAccuracyReward",
    "CompositeReward",
    "ConsistencyReward",
    "EmotionAccuracyReward",
    "FormatReward",
    "OfficialAUReward",
    "OfficialAccuracyReward",
    "OfficialFormatReward",
    "RewardComponent",
    "RewardOutput",
    "ValenceArousalReward",
]
