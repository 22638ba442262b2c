"""Reports for a workspace's members: conversations per day, how soon visitors got a first
answer and how long conversations took to be resolved, per site and per agent, over the last
7, 30 or 90 days in the workspace's time zone, as charts, tables and CSV."""
