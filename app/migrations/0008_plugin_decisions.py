from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0007_managed_workloads')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='PluginActivation',
            options={'table': 'plugin_activations', 'app': 'models', 'unique_together': (('plugin', 'organization'),), 'pk_attr': 'id', 'table_description': 'Whether a plugin is enabled for one organization (reseller or company). `set_by` is the'},
        ),
        ops.AddField(
            model_name='PluginActivation',
            name='set_by',
            field=fields.ForeignKeyField('models.Organization', source_field='set_by_id', null=True, db_constraint=True, to_field='id', related_name='plugin_decisions', on_delete=OnDelete.SET_NULL),
        ),
    ]
