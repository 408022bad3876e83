from metarl_agents.leaderboard.cli import main

raise SystemExit(main())
