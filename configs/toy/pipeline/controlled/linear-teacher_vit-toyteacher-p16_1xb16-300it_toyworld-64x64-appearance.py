# Controlled teacher "appearance": learns colour x texture of the object under each patch (6 x 4
# values) and nothing else (docs/pipeline.md, the controlled experiment).
_base_ = ['./linear-teacher_vit-toyteacher-p16_1xb16-300it_toyworld-64x64.py']

factor = 'appearance'
model = dict(decode_head=dict(num_classes=24))
train_dataloader = dict(dataset=dict(factor=factor))
val_dataloader = dict(dataset=dict(factor=factor))
test_dataloader = val_dataloader
