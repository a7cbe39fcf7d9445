from .scheduling_langevin import LangevinScheduler, LangevinSchedulerOutput

__all__ = ["LangevinScheduler", "LangevinSchedulerOutput"]
