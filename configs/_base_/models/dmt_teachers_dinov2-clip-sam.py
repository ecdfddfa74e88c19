# Teachers beyond the paper's three (docs/teachers.md): DINOv2, OpenAI CLIP, OpenCLIP, SigLIP
# and SAM image encoders, ViT-B each, as TimmTeacher: the file its authors publish is
# detected, converted by timm's own converter and loaded strictly. Each teacher runs at its
# own resolution and patch size (DINOv2 p14 at 224: 16x16; CLIP / SigLIP p16 at 224: 14x14;
# SAM p16 at 1024: 64x64); the target generator resizes its tokens to the student's grid,
# and the head gives each width its own TFD head and SFD adaptor.
#
# Point the config fields at your downloads, e.g.
#   --cfg-options model.target_generator.teacher_checkpoints.sam=/ckpt/sam_vit_b_01ec64.pth
foundation_ckpts = dict(
    dinov2='checkpoints/dinov2_vitb14_pretrain.pth',
    dinov2_reg='checkpoints/dinov2_vitb14_reg4_pretrain.pth',
    clip='checkpoints/ViT-B-16.pt',  # OpenAI's TorchScript archive
    openclip='checkpoints/openclip_vitb16_laion2b_s34b_b88k_open_clip_pytorch_model.bin',
    siglip='checkpoints/siglip_vitb16_webli_open_clip_pytorch_model.bin',
    sam='checkpoints/sam_vit_b_01ec64.pth')

# DINOv2 ViT-B/14 (layer scale; its 518-px position table resized the authors' way)
dinov2_teacher = dict(type='TimmTeacher', name='dinov2', family='dinov2',
                      arch='vit_base_patch14_dinov2', img_size=224)
# ... with 4 registers (summary: the CLS token; registers are not targets)
dinov2_reg_teacher = dict(type='TimmTeacher', name='dinov2', family='dinov2',
                          arch='vit_base_patch14_reg4_dinov2', img_size=224)
# OpenAI CLIP ViT-B/16 image tower (QuickGELU); summary: the final-normed CLS token before
# CLIP's projection (a fixed linear map the TFD head can learn), so it is 768 wide like the
# patch tokens
clip_teacher = dict(type='TimmTeacher', name='clip', family='openai_clip',
                    arch='vit_base_patch16_clip_quickgelu_224', img_size=224)
# OpenCLIP ViT-B/16 (LAION-2B, GELU)
openclip_teacher = dict(type='TimmTeacher', name='openclip', family='open_clip',
                        arch='vit_base_patch16_clip_224', img_size=224)
# SigLIP ViT-B/16 (WebLI): no CLS token; summary: its attention-pool (MAP) output
siglip_teacher = dict(type='TimmTeacher', name='siglip', family='siglip',
                      arch='vit_base_patch16_siglip_224', img_size=224)
# SAM ViT-B image encoder at 1024 px; targets: its 256-d neck output (64x64 grid), summary:
# the neck map's average. forward_chunk bounds its memory (global attention over 4096
# tokens with a relative-position bias); it does not change the targets.
sam_teacher = dict(type='TimmTeacher', name='sam', family='sam', arch='samvit_base_patch16',
                   img_size=1024, summary='avg', forward_chunk=16)
