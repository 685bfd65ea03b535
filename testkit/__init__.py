"""Test tools: moto gap emulation (moto_gaps), an EC2 simulator with token buckets and a
virtual clock (ec2sim), a day of copies (copysim), and an IAM policy evaluator (iam_eval).
Imported by the tests and by make bench; never by the job files."""
