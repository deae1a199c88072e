"""The shipped LF suites, one plain module per task (``youtube_spam``, ``youtube_spam_fm``).

Suites load by path (``labelflow init --lfs lfs/youtube_spam.py``, :func:`labelflow.load_lf_suite`);
the folder is a package so that the wheel ships them, as ``labelflow.lfs``.
"""
