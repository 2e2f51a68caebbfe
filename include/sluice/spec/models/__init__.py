"""Pydantic models of a pipeline spec (``dags/<name>.pipeline.yaml``).

One typed model, three uses: compiling DAGs, ``sluice lint`` and the JSON Schema that
editors use to validate specs. Every model forbids unknown keys so a misspelt key is an
error with a hint, never a silently ignored setting.
"""

from __future__ import annotations

from sluice.spec.expectations import ROW_LEVEL_EXPECTATIONS as ROW_LEVEL_EXPECTATIONS
from sluice.spec.models.deployment import DEPLOY_TARGETS as DEPLOY_TARGETS
from sluice.spec.models.deployment import KUBERNETES as KUBERNETES
from sluice.spec.models.deployment import LOCAL as LOCAL
from sluice.spec.models.deployment import Deployment as Deployment
from sluice.spec.models.deployment import KubernetesDeployment as KubernetesDeployment
from sluice.spec.models.deployment import LocalDeployment as LocalDeployment
from sluice.spec.models.deployment import ResourceList as ResourceList
from sluice.spec.models.deployment import Resources as Resources
from sluice.spec.models.deployment import _target_enum as _target_enum
from sluice.spec.models.deployment import registered_targets as registered_targets
from sluice.spec.models.evaluation import CLASSIFICATION_METRICS as CLASSIFICATION_METRICS
from sluice.spec.models.evaluation import HIGHER_IS_BETTER as HIGHER_IS_BETTER
from sluice.spec.models.evaluation import METRIC_RANGE as METRIC_RANGE
from sluice.spec.models.evaluation import REGRESSION_METRICS as REGRESSION_METRICS
from sluice.spec.models.evaluation import Evaluation as Evaluation
from sluice.spec.models.evaluation import Gate as Gate
from sluice.spec.models.features import SPARK_VALUE_SCHEMA as SPARK_VALUE_SCHEMA
from sluice.spec.models.features import Features as Features
from sluice.spec.models.features import SparkInput as SparkInput
from sluice.spec.models.monitoring import Drift as Drift
from sluice.spec.models.monitoring import DriftMethod as DriftMethod
from sluice.spec.models.monitoring import Monitoring as Monitoring
from sluice.spec.models.pipeline import Alerts as Alerts
from sluice.spec.models.pipeline import PipelineSpec as PipelineSpec
from sluice.spec.models.pipeline import Storage as Storage
from sluice.spec.models.rules import _HOST_LABEL as _HOST_LABEL
from sluice.spec.models.rules import _IMAGE_COMPONENT as _IMAGE_COMPONENT
from sluice.spec.models.rules import _IMAGE_DOMAIN as _IMAGE_DOMAIN
from sluice.spec.models.rules import _IMAGE_HOST_PART as _IMAGE_HOST_PART
from sluice.spec.models.rules import _QUANTITY_SUFFIX as _QUANTITY_SUFFIX
from sluice.spec.models.rules import CRON_HINT as CRON_HINT
from sluice.spec.models.rules import CRON_PRESETS as CRON_PRESETS
from sluice.spec.models.rules import HOST_HINT as HOST_HINT
from sluice.spec.models.rules import IDENTIFIER as IDENTIFIER
from sluice.spec.models.rules import IMAGE_REFERENCE as IMAGE_REFERENCE
from sluice.spec.models.rules import K8S_NAME as K8S_NAME
from sluice.spec.models.rules import K8S_QUANTITY as K8S_QUANTITY
from sluice.spec.models.rules import MAX_SEED as MAX_SEED
from sluice.spec.models.rules import OBJECT_STORAGE_ISSUE as OBJECT_STORAGE_ISSUE
from sluice.spec.models.rules import S3_BUCKET as S3_BUCKET
from sluice.spec.models.rules import S3Reachable as S3Reachable
from sluice.spec.models.rules import _did_you_mean as _did_you_mean
from sluice.spec.models.rules import _not_a_bool as _not_a_bool
from sluice.spec.models.rules import cron_problem as cron_problem
from sluice.spec.models.rules import host_problem as host_problem
from sluice.spec.models.rules import parse_quantity as parse_quantity
from sluice.spec.models.rules import s3_location_problem as s3_location_problem
from sluice.spec.models.rules import split_s3 as split_s3
from sluice.spec.models.source import ColumnType as ColumnType
from sluice.spec.models.source import Detect as Detect
from sluice.spec.models.source import Source as Source
from sluice.spec.models.source import Validation as Validation
from sluice.spec.models.training import SPARK_MODELS as SPARK_MODELS
from sluice.spec.models.training import SPARK_PARAMS as SPARK_PARAMS
from sluice.spec.models.training import Split as Split
from sluice.spec.models.training import Training as Training
from sluice.spec.models.training import Window as Window
