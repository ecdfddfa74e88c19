# Controlled teacher "category": learns the shape of the object under each patch (6 categories)
# and nothing else (docs/pipeline.md, the controlled experiment).
_base_ = ['./linear-teacher_vit-toyteacher-p16_1xb16-300it_toyworld-64x64.py']

factor = 'category'
model = dict(decode_head=dict(num_classes=6))
train_dataloader = dict(dataset=dict(factor=factor))
val_dataloader = dict(dataset=dict(factor=factor))
test_dataloader = val_dataloader
