"""Active learning with mixup: datasets, models, query strategies, the loop and its metrics.

from mixlab.active import ActiveLearningConfig, run_active_learning
curve = run_active_learning(ActiveLearningConfig(alpha=0.2, strategy="entropy"))
"""

from mixlab.active.config import ActiveLearningConfig, LearningCurve
from mixlab.active.loop import run_active_learning
from mixlab.active.strategies import STRATEGIES

__all__ = ["STRATEGIES", "ActiveLearningConfig", "LearningCurve", "run_active_learning"]
