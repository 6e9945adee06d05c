"""Learning sessions (issue 6, docs/SESSIONS.md): the consolidator's pure domain.

    states     the session and edit lifecycles (one table each, enforced by the store and the consolidator)
    guidance   what sessions edit: pattern status/priority/action, wait policies, playbooks; one applier per op
    harvest    digests per job, runs and TaskRecords mined from the ledger, stable splits, dream tasks
    diagnose   failure clusters with rates from real records
    teacher    the Teacher protocol and the deterministic statistical teacher
    plan       the fixed (pillar, op) risk table, the frozen LearningPlan, autonomy decisions
    gate       replay of a split against a guidance state, benchmark snapshots, edit-by-edit acceptance
    artifacts  session.json (authoritative) and plan.json; the store indexes them (services.store.session_store)
    pipeline   one session from harvested runs to edit outcomes (no I/O)
"""
