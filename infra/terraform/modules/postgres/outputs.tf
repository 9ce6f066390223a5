output "address" {
  description = "Host name of the instance."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "Port of the instance."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Database name."
  value       = aws_db_instance.this.db_name
}

output "database_url" {
  description = "DATABASE_URL for Aegis (TLS required)."
  value       = "postgresql+psycopg://${var.username}:${urlencode(var.password)}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/${var.database_name}?sslmode=require"
  sensitive   = true
}
