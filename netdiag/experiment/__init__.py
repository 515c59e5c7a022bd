"""The experiment: the article's two-namespace walk-through as a sequence of steps.

``runner`` drives topology -> traffic + capture -> analysis -> report and
records each step as a ``StepResult``; ``model`` holds the frozen results that
the report stage and ``netdiag run --json`` consume.
"""
