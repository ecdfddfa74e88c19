# Toy DMT with teachers of three families, widths and patch sizes, on CPU: the toy student
# (64 wide, patch 16, a 4x4 grid at 64 px) distilled from
#   dinov2 -- DINOv2 ViT (layer scale, patch 14) 48 wide at 70 px: a 5x5 grid;
#   clip   -- OpenAI CLIP image tower (pre-norm, QuickGELU) 64 wide, patch 8 at 64 px: 8x8;
#   sam    -- SAM image encoder (windowed + global attention, relative positions, neck)
#             32 wide with a 40-d neck, patch 16 at 128 px: 8x8;
# each loaded as a TimmTeacher from the file its authors publish, converted on load, and
# resized to the student's grid. As in the paper-trio toy config, the teachers have NO
# checkpoint here (random frozen networks, allow_random_teachers=True); the tests write
# tiny official files of each family and pass them through
# model.target_generator.teacher_checkpoints.
_base_ = './dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py'

model = dict(target_generator=dict(
    teachers=[
        dict(type='TimmTeacher', name='dinov2', family='dinov2',
             arch='vit_small_patch14_dinov2', img_size=70,
             model_kwargs=dict(embed_dim=48, depth=2, num_heads=2)),
        dict(type='TimmTeacher', name='clip', family='openai_clip',
             arch='vit_base_patch16_clip_quickgelu_224', img_size=64,
             model_kwargs=dict(embed_dim=64, depth=2, num_heads=1, patch_size=8)),
        dict(type='TimmTeacher', name='sam', family='sam', arch='samvit_base_patch16',
             img_size=128,
             model_kwargs=dict(embed_dim=32, depth=2, num_heads=2, window_size=4,
                               global_attn_indexes=[1], neck_chans=40)),
    ],
    teacher_checkpoints=dict(_delete_=True, dinov2=None, clip=None, sam=None)))
