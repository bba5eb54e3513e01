"""Collaborative filtering: ratings (:mod:`.ratings`), metrics, baselines and the CF-RBM
(:mod:`.model`, trained on the common :class:`~boltzkit.training.Trainer`)."""

from ..models.conditional import ConditionalRBM
from .baselines import BiasBaseline, GlobalMean
from .metrics import mae, ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k, rmse
from .model import CASE_DEFAULTS, CFRBM, paper_schedule
from .ratings import RatingData, align_ratings, kfold_splits, load_ratings, split_ratings, to_dense, to_one_hot

__all__ = ["CFRBM", "ConditionalRBM", "CASE_DEFAULTS", "paper_schedule", "RatingData", "load_ratings",
           "align_ratings", "split_ratings", "kfold_splits", "to_dense", "to_one_hot", "rmse", "mae",
           "precision_at_k", "recall_at_k", "ndcg_at_k", "ranking_metrics", "GlobalMean", "BiasBaseline"]
