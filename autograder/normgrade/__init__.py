"""normgrade: staff tooling for the normalization assignment (stubs, expected values, releases, grading).

Hidden test cells call normgrade.grade(function) and normgrade.grade_answer(question, answer).
"""
from .kernel import grade, grade_answer

__all__ = ["grade", "grade_answer"]
