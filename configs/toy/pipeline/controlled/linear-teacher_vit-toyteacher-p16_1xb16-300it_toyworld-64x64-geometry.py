# Controlled teacher "geometry": learns size x depth order of the object under each patch (3 x 3
# values) and nothing else (docs/pipeline.md, the controlled experiment).
_base_ = ['./linear-teacher_vit-toyteacher-p16_1xb16-300it_toyworld-64x64.py']

factor = 'geometry'
model = dict(decode_head=dict(num_classes=9))
train_dataloader = dict(dataset=dict(factor=factor))
val_dataloader = dict(dataset=dict(factor=factor))
test_dataloader = val_dataloader
