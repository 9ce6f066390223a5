# PostgreSQL on RDS for Aegis: encrypted, never publicly reachable, automated backups, and
# deletion protection unless the overlay turns it off (staging). With vpc_id and subnet_ids it
# gets its own subnet group and a security group that admits 5432 only from
# allowed_security_group_ids / allowed_cidr_blocks; without them RDS uses the default VPC.

locals {
  own_network = var.vpc_id != null && length(var.subnet_ids) > 0
}

resource "aws_db_subnet_group" "this" {
  count      = local.own_network ? 1 : 0
  name       = var.identifier
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_security_group" "this" {
  count       = local.own_network ? 1 : 0
  name        = "${var.identifier}-postgres"
  description = "PostgreSQL for Aegis: 5432 from the cluster only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_security_groups" {
  for_each                     = local.own_network ? toset(var.allowed_security_group_ids) : toset([])
  security_group_id            = aws_security_group.this[0].id
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  description                  = "PostgreSQL from ${each.value}"
}

resource "aws_vpc_security_group_ingress_rule" "from_cidrs" {
  for_each          = local.own_network ? toset(var.allowed_cidr_blocks) : toset([])
  security_group_id = aws_security_group.this[0].id
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  description       = "PostgreSQL from ${each.value}"
}

resource "aws_db_instance" "this" {
  identifier     = var.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true

  db_name  = var.database_name
  username = var.username
  password = var.password
  port     = 5432

  db_subnet_group_name   = local.own_network ? aws_db_subnet_group.this[0].name : null
  vpc_security_group_ids = local.own_network ? [aws_security_group.this[0].id] : null
  publicly_accessible    = false
  multi_az               = var.multi_az

  backup_retention_period    = var.backup_retention_days
  copy_tags_to_snapshot      = true
  deletion_protection        = var.deletion_protection
  skip_final_snapshot        = var.skip_final_snapshot
  final_snapshot_identifier  = var.skip_final_snapshot ? null : "${var.identifier}-final"
  auto_minor_version_upgrade = true
  apply_immediately          = false

  performance_insights_enabled = true
  tags                         = var.tags
}
