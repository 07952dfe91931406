"""What people read: feedback, the class report, status, the gradebook export, similarity."""
