from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notebooks", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="notebook",
            name="overview_waiting_job_id",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
    ]
