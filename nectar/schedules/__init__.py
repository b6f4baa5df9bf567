"""Schedules: tasks run at fire times computed from a cron expression or an interval, each fired once."""
