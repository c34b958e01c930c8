"""The load burst shared by every live backend: prompts, schedules, streaming client, aiperf export."""
