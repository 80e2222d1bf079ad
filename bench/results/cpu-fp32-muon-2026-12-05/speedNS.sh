cd /work/main && . .venv/bin/activate && python -m bench.student_speed --data-dir /tmp/c10 --images 5000 --rounds 3 \
 --config "today=kd_fast94:" \
 --config "full_fp32=kd_fast94_muon:train.select_fraction=1 train.whiten_bias_epochs=1" \
 --config "sel_fp32=kd_fast94_muon:train.select_after=1 train.whiten_bias_epochs=1" \
 --config "sel_bf16=kd_fast94_muon:train.select_after=1 train.whiten_bias_epochs=1 train.muon_ns_precision=bf16" \
 --teacher "t94=teacher_94:train.label_smoothing=0" \
 --teacher "t94m_full_fp32=teacher_94_muon:train.label_smoothing=0 train.select_fraction=1" \
 --teacher "t94m_fp32=teacher_94_muon:train.label_smoothing=0" \
 --teacher "t94m_bf16=teacher_94_muon:train.label_smoothing=0 train.muon_ns_precision=bf16" \
 --json /work/s9/speedNS.json
