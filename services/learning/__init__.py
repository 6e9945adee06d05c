"""The learning rules of seed 000 as pure functions: no I/O, no clock, no settings lookup.

Each module holds one family of rules; every constant comes in through `services.settings.LearningSettings`
(or an explicit argument), so one rule lives in one place. The store's projections call these inside the
batch transaction; docs/LEARNING.md documents every formula and constant.
"""
