"""Evaluation: the deterministic simulated user and the metrics of the robot-user protocol v1."""

from medrefine_lab.eval.metrics import (
    NoC,
    dice_auc,
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    noc,
    nsd_per_class,
)
from medrefine_lab.eval.robot import Robot, check_stroke
from medrefine_lab.eval.robot.regions import has_error
from medrefine_lab.eval.robot.types import Effort, RobotConfig, Stroke, paint

__all__ = [
    "Effort",
    "NoC",
    "Robot",
    "RobotConfig",
    "Stroke",
    "check_stroke",
    "dice_auc",
    "dice_per_class",
    "has_error",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "noc",
    "nsd_per_class",
    "paint",
]
