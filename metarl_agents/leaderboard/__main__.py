from metarl_agents.cli.bench import main

raise SystemExit(main())
