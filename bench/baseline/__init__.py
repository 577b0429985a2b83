"""The design VQA replaced, modelled faithfully for the cost benchmark (`python -m bench.cost`).

Prime Video's first stream monitor ran on AWS Step Functions: a media converter
wrote every second of the stream to S3, each detector was its own function that
read that second back, and the state machine went through several transitions
per second of stream. Here the same shape runs on the same Temporal and S3
servers as our product, with the same decoding code and the same detectors:

    PerSecondWorkflow (one per stream, bench/baseline/workflow.py)
      probe_source                       (the product's activity)
      per second of stream:
        convert_second                   decode that second, PUT its luma frames and audio to S3
        detect_second x detectors        in parallel (a Map state): GET the second, run ONE detector
        carry each detector's state to the next second
      write_report                       (the product's activity)

Only the architecture differs from `StreamMonitorWorkflow`.
"""
