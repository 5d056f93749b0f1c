"""Old home of :class:`ann.evaluation.evaluator.Evaluator`, kept so that the
``config.yaml`` of runs and checkpoints written before the move still
instantiate (``_target_: ann.engine.evaluator.Evaluator``)."""

from ann.evaluation.evaluator import Evaluator

__all__ = ["Evaluator"]
