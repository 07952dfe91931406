"""Where submissions come from and grades go: Gradescope's autograder, Canvas's roster and import file, LMS archives (intake), nbgrader's exchange."""
