"""The course: every record the notebooks read, by name, at any scale (:mod:`.runs`), and the exercises' checks (:mod:`.exercises`)."""
from .exercises import EXERCISES, Exercise, check, expected
from .runs import ATTACKS, COURSE, CourseRun, available, config, configs, find_upward, prepare, record, scale, setup, status

__all__ = ["ATTACKS", "COURSE", "CourseRun", "available", "config", "configs", "find_upward", "prepare", "record", "scale", "setup", "status",
           "EXERCISES", "Exercise", "check", "expected"]
