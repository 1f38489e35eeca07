"""The deterministic simulated user of the robot-user protocol v1 (``robot-user-protocol.md``).

``user`` drives an interaction (R3-R4); ``scribble``, ``click`` and ``box`` draw one kind of
mark each (R5-R13); ``regions`` holds the error-region geometry they share; ``types`` the
strokes, the effort counters and :class:`RobotConfig`.
"""

from medrefine_lab.eval.robot.types import Effort, RobotConfig, Stroke, paint
from medrefine_lab.eval.robot.user import Robot, check_stroke

__all__ = ["Effort", "Robot", "RobotConfig", "Stroke", "check_stroke", "paint"]
