"""Measuring DMT: FLOPs, teacher diversity (linear CKA), step throughput (variants, naive
peers, parts), data-pipeline throughput and the Markdown report
(tools/analysis_tools/benchmark_pretrain.py, get_flops.py, teacher_cka.py;
docs/performance.md). Imported by tools only, never by the training code."""
from .cka import CKAMatrix, block_features, cka_matrix, linear_cka
from .data_throughput import (
                              list_images,
                              loader_throughput,
                              pipeline_throughput,
                              train_pipeline,
                              workers_needed,
)
from .flops import count_flops, dmt_flops, mmengine_flops, num_params, teacher_flops
from .model_setup import (
                              build_model,
                              import_config_modules,
                              input_size,
                              prepare_config,
                              quiet_mmengine_log,
                              synthetic_batch,
)
from .parts import measure_parts
from .report import PEAK_BF16_TFLOPS, default_peak_tflops, device_info, markdown_summary, mfu
from .shipped import measure_shipped
from .timing import peak_memory, reset_peak_memory, run_variant, time_calls
from .variants import (
                              ABLATIONS,
                              PEERS,
                              VARIANTS,
                              build_variant_optim_wrapper,
                              merge_param_groups,
                              optim_wrapper_cfg,
                              resolve_variant,
                              variant_context,
)

__all__ = ['VARIANTS', 'ABLATIONS', 'PEERS', 'PEAK_BF16_TFLOPS', 'prepare_config', 'build_model',
           'import_config_modules', 'quiet_mmengine_log', 'input_size', 'synthetic_batch',
           'resolve_variant', 'optim_wrapper_cfg', 'variant_context',
           'build_variant_optim_wrapper', 'merge_param_groups', 'time_calls',
           'peak_memory', 'reset_peak_memory', 'run_variant', 'measure_parts',
           'pipeline_throughput', 'loader_throughput', 'measure_shipped', 'train_pipeline',
           'workers_needed', 'list_images',
           'device_info', 'default_peak_tflops', 'mfu', 'markdown_summary', 'count_flops',
           'dmt_flops', 'mmengine_flops', 'num_params', 'teacher_flops', 'CKAMatrix',
           'block_features', 'cka_matrix', 'linear_cka']
